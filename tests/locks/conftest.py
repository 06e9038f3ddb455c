"""One stack (control plane, SSH broker, PostgreSQL broker) for every test in this package."""
from __future__ import annotations

import pytest

from tests.locks.stack import TwoBrokers
from tests.support import require, require_binary

# Resources and rules of the life-cycle tests, beside the broker tests' own (auto-approved dev).
RESOURCES = {"firstuse-01": {"labels": {"env": "firstuse"}}, "single-01": {"labels": {"env": "single"}},
             "window-01": {"labels": {"env": "window"}}}
CLAIM_WITHIN = 3  # seconds
RULES = [
    {"name": "first-use", "when": 'resource.labels.env == "firstuse"', "approval": "auto", "max_duration": "1h",
     "activate": "on_first_use", "claim_within": f"{CLAIM_WITHIN}s"},
    {"name": "single-use", "when": 'resource.labels.env == "single"', "approval": "auto", "max_duration": "1h",
     "max_sessions": 1},
    {"name": "window", "when": 'resource.labels.env == "window" && now.getHours("UTC") >= 0', "approval": "auto",
     "max_duration": "1h"},
]


@pytest.fixture(scope="package")
def stack(tmp_path_factory):
    for binary in ("sshd", "ssh", "ssh-keygen"):
        require_binary(binary)
    try:
        import psycopg

        psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test", connect_timeout=5).close()
    except Exception as e:
        require(False, f"PostgreSQL at 127.0.0.1:5432 ({type(e).__name__})")
    with TwoBrokers(tmp_path_factory.mktemp("locks"), rules=RULES, resources=RESOURCES) as s:
        yield s


