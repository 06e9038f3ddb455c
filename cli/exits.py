"""The exit statuses of `jitgate`, so a script can tell the outcomes apart.

| status | meaning |
| --- | --- |
| 0 | done (for `request`: the request is active or waits for approval) |
| 1 | error: one `error: ...` line on stderr (a refusal shows its status and code) |
| 2 | usage error (click's) |
| 3 | `policy diff`: a decision changed between the two policy sets |
| 4 | `request`: the policies deny it (the outcome is printed as usual) |
"""
from __future__ import annotations

OK = 0
ERROR = 1
USAGE = 2
DECISIONS_CHANGED = 3
DENIED = 4
