"""Every bound on untrusted policy input, in one place (policy/README.md documents each).

Policy files come from pull requests and from any caller of ValidatePolicy, and
requests come from users: each bound below is checked where the input enters,
and a refusal names the field, the limit and `file:line:col` where there is one.
Measured on the project's 2-core test machine (PyYAML composes ~170 KiB/s with
marks; cel-python runs one comprehension step in ~60-90 us).
"""
from __future__ import annotations

from datetime import timedelta

# --- files -------------------------------------------------------------------
# One file: the largest real sets are tens of KiB; 512 KiB composes in ~3 s here.
MAX_POLICY_FILE_BYTES = 512 * 1024
# A folder's files together: ~12 s to check here, well inside the sandbox's CPU limit.
MAX_POLICY_SET_BYTES = 2 * 1024 * 1024
# Files in a folder: a set is split by team or resource kind, not into thousands of files.
MAX_POLICY_FILES = 256

# --- YAML --------------------------------------------------------------------
# Aliases (`*name`) per file: real policies reuse a handful of label sets.
MAX_YAML_ALIASES = 64
# Nodes of a file with every alias expanded: a 512 KiB file has at most ~170k nodes of
# its own; billion-laughs files are refused at the alias that crosses this.
MAX_YAML_NODES = 200_000
# Nesting of mappings and lists: the format needs 6 levels (rules/levels/approvers).
MAX_YAML_DEPTH = 32

# --- names -------------------------------------------------------------------
# Users, groups, resources, labels, logins, roles, rules, tests: short identifiers or a
# sentence (test names); longer is a mistake or an attempt to flood approvers' screens.
MAX_NAME_CHARS = 256

# --- CEL (static, checked when a rule compiles) -------------------------------
# One rule's `when`: real rules are one or two lines.
MAX_CEL_CHARS = 4096
# Brackets nested in one expression: the parser recurses per level.
MAX_CEL_NESTING = 32
# Macros (exists/all/exists_one/map/filter) inside the range or body of another:
# two levels (e.g. groups x owners) cover real rules; each level multiplies the work.
MAX_CEL_COMPREHENSION_NESTING = 2
# Elements of one list or map literal: an inline allow-list of hosts or users.
MAX_CEL_LIST_LITERAL = 256
# Characters of one string literal: a name, a regex, a message.
MAX_CEL_STRING_LITERAL = 1024

# --- CEL cost (units: one value element touched ~ 0.3-1 us of cel-python work) --
# One comprehension step: cel-python builds an activation per step (~90 us here).
CEL_STEP_COST = 100
# A rule whose estimated cost (comprehension ranges multiplied through their
# nesting, over the literal sizes or the largest list the policy's users and
# resources hold) is above this is refused at check: half a decision's budget.
MAX_RULE_COST = 50_000
# Work all the rules of one decision may do at evaluation (~0.1-0.2 s here, ~1,000
# comprehension steps); a rule that runs over it is an evaluation error, so the
# decision is a deny naming the rule.
MAX_DECISION_COST = 100_000

# --- requests (DryRun, `policy eval --request`, `policy diff --requests`) -------
# A request is a few names, a 2 KiB reason and a history of five numbers.
MAX_REQUEST_JSON_BYTES = 64 * 1024
# Nesting of a request's JSON: the request object and its `history` need 2.
MAX_REQUEST_DEPTH = 4
# Any duration in a policy or a request: a year; longer is not just-in-time access.
MAX_DURATION = timedelta(days=366)
# History counters and extension numbers: CEL ints are 64-bit, real values are small.
MAX_COUNTER = 1_000_000_000

# --- the sandbox that checks untrusted files (ValidatePolicy, policy check/test/diff) --
# CPU seconds: a 2 MiB set checks in ~12 s here; 2.5x headroom.
SANDBOX_CPU_SECONDS = 30
# Address space: a checked maximum-size set stays well under 400 MiB.
SANDBOX_MEMORY_BYTES = 1024 * 1024 * 1024
# Wall clock: twice the CPU limit, so a busy machine still finishes a legitimate check.
SANDBOX_WALL_SECONDS = 60
