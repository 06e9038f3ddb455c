"""One stack for the recording-store tests: an S3 server, a control plane storing recordings in
it, the SSH broker (with its demo target) and the PostgreSQL broker (on the local PostgreSQL).

Identities: `alice` (sre, the sessions' owner), `bob` (sre, not an owner, not an auditor),
`audrey` (the policies' `auditors` group), `admin` (admins).
"""
from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.broker.pg.harness import LOCAL_PG
from tests.broker.ssh.harness import SshStack, policy_text
from tests.cluster import ControlPlane, spawn_broker, stop_process
from tests.recordings.s3server import S3Server

BUCKET = "jitgate-rec"
REPO = Path(__file__).resolve().parents[2]


class RecordingStack(SshStack):
    """SshStack whose control plane keeps recordings in S3, plus a PostgreSQL broker."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.s3 = S3Server(self.tmp / "s3", bucket=BUCKET)
        self.role = f"jgt_rec_{secrets.token_hex(3)}"
        self.pg_proc: subprocess.Popen[bytes] | None = None
        self.pg_dir = self.tmp / "pg-broker"
        self.pg_port = 0

    def start(self) -> RecordingStack:
        import psycopg

        from broker.demo_target import free_port
        from controlplane.identity import open_ssh_cas

        self.s3.start()
        with psycopg.connect(**LOCAL_PG, autocommit=True) as conn:
            conn.execute(f"create role {self.role} login")
        for attempt in range(3):
            try:
                self.target.start(free_port())
                break
            except RuntimeError:
                self.target.stop()
                if attempt == 2:
                    raise
        doc = yaml.safe_load(policy_text(self.target))
        doc["users"].update({"audrey": {"groups": ["auditors"]}})
        doc["resources"]["appdb"] = {"kind": "postgres", "address": "127.0.0.1:5432", "database": "test",
                                     "labels": {"env": "dev"}, "roles": [self.role], "owners": ["group:sre"]}
        self.policies.write_text(yaml.safe_dump(doc, sort_keys=False))
        self.cp = ControlPlane(self.tmp / "cp", policies=self.policies, admins=("admin",), brokers=("broker",),
                               config={**self.cp_config, "recordings": f"s3://{BUCKET}/jitgate",
                                       "recordings_endpoint": self.s3.endpoint}, env=self.s3.env)
        _, upstream = open_ssh_cas(self.cp.data)
        self.upstream_ca_line = upstream.public_key_line()
        self.target.set_trusted_ca([self.upstream_ca_line])
        self.start_broker()
        self.start_pg_broker()
        return self

    def start_pg_broker(self) -> None:
        assert self.cp is not None
        self.ca_file = self.tmp / "jitgate-ca.pem"
        self.ca_file.write_bytes(self.cp.ca_pem)
        cmd = [sys.executable, "-m", "cli.main", "pg-broker", "--listen", "127.0.0.1:0",
               "--identity", str(self.cp.identity("broker")), "--server", self.cp.address,
               "--data-dir", str(self.pg_dir), "--issue-tls-from", str(self.cp.data.root),
               "--tls-hostname", "localhost"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.pg_proc, self.pg_port = spawn_broker(cmd, env, self.tmp / "pg-broker.log", self.pg_dir / "listen.addr",
                                                  "pg broker", timeout=30)

    def pg_grant(self, user: str) -> Any:
        import datetime as dt

        from google.protobuf import duration_pb2

        from jitgate.v1 import access_pb2

        d = duration_pb2.Duration()
        d.FromTimedelta(dt.timedelta(hours=1))
        return self.client(user).access.CreateRequest(access_pb2.CreateRequestRequest(
            resource="appdb", role=self.role, duration=d, reason="recording store test")).request

    def pg_dsn(self, user: str, grant_id: str) -> dict[str, Any]:
        from jitgate.v1 import access_pb2

        resp = self.client(user).access.IssueDatabaseToken(access_pb2.IssueDatabaseTokenRequest(grant_id=grant_id))
        return {"host": "localhost", "port": self.pg_port, "user": resp.user, "password": resp.token,
                "dbname": resp.database or "test", "sslmode": "verify-full", "sslrootcert": str(self.ca_file),
                "connect_timeout": 10, "gssencmode": "disable"}

    def cli(self, who: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`jitgate ARGS` as `who` with only an identity and a server address (no data directory)."""
        assert self.cp is not None
        env = {k: v for k, v in self.cp.cli_env(who).items() if not k.startswith("AWS_")}
        env.pop("JITGATE_DATA_DIR", None)  # only an identity: no broker disk, no store credentials
        env["COLUMNS"] = "200"
        return subprocess.run([sys.executable, "-m", "cli.main", *args], env=env, cwd=self.tmp,
                              capture_output=True, text=True, timeout=timeout)

    def stop(self) -> None:
        if self.pg_proc is not None:
            stop_process(self.pg_proc)
            self.pg_proc = None
        try:
            super().stop()
        finally:
            self.s3.stop()
            try:
                import psycopg

                with psycopg.connect(**LOCAL_PG, autocommit=True) as conn:
                    conn.execute(f"drop role if exists {self.role}")
            except Exception:
                pass
