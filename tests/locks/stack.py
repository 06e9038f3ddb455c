"""One control plane with both real brokers (SSH and PostgreSQL) for the lock, activation and
session-limit tests: `tests.broker.ssh.harness.SshStack` and `tests.broker.pg.harness.PgStack`
sharing one `jitgate server`."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.broker.pg.harness import PgStack
from tests.broker.pg.harness import policy_text as pg_policy
from tests.broker.ssh.harness import SshStack
from tests.broker.ssh.harness import policy_text as ssh_policy
from tests.cluster import NO_MODEL, ControlPlane


class TwoBrokers:
    """Target sshd + SSH broker + PostgreSQL broker on one control plane."""

    def __init__(self, tmp: Path, rules: list[dict[str, Any]] | None = None,
                 resources: dict[str, dict[str, Any]] | None = None) -> None:
        self.tmp = Path(tmp)
        self.ssh = SshStack(self.tmp / "ssh")
        self.pg = PgStack(self.tmp / "pg", private=False)
        self._rules = rules or []
        self._resources = resources or {}
        self.cp: ControlPlane | None = None

    def policy(self) -> str:
        doc = yaml.safe_load(ssh_policy(self.ssh.target))
        pg = yaml.safe_load(pg_policy(self.pg.ro, self.pg.rw, None))
        doc["resources"].update(pg["resources"])
        for name, extra in self._resources.items():  # more resources: copies of web-01 with other labels
            doc["resources"][name] = {**doc["resources"]["web-01"], **extra}
        doc["rules"] = self._rules + doc["rules"]
        return yaml.safe_dump(doc, sort_keys=False)

    def start(self) -> TwoBrokers:
        from controlplane.identity import open_ssh_cas

        self.ssh.start_target()
        self.pg.prepare()
        policies = self.tmp / "policies.yaml"
        policies.write_text(self.policy())
        self.cp = ControlPlane(self.tmp / "cp", policies=policies, admins=("admin",), brokers=("broker",),
                               config=NO_MODEL)  # every grant here names its duration
        self.ssh.cp = self.pg.cp = self.cp
        _, upstream = open_ssh_cas(self.cp.data)
        self.ssh.target.set_trusted_ca([upstream.public_key_line()])
        self.ssh.start_broker()
        self.pg.start_broker()
        return self

    def stop(self) -> None:
        self.ssh.stop()  # broker, target, control plane
        self.pg.stop()  # broker, roles and schema

    def __enter__(self) -> TwoBrokers:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def client(self, name: str) -> Any:
        assert self.cp is not None
        return self.cp.client(name)
