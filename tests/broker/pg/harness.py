"""A real PostgreSQL brokering stack for tests and the benchmark.

    with PgStack(tmp) as stack:
        grant = stack.grant("alice", "testdb", stack.ro, seconds=3600)
        token = stack.token("alice", grant.id)
        conn = psycopg.connect(**stack.dsn(token))         # TLS verify-full through the broker

The control plane is `tests.cluster.ControlPlane` (a `jitgate server`
subprocess over mTLS); the broker is `jitgate pg-broker` in a subprocess with a
TLS certificate from the control plane's X.509 CA; the database is the local
PostgreSQL (trust on 127.0.0.1), where the stack makes two roles and a schema
of its own and drops them at the end. `PrivateCluster` is an `initdb` cluster
on a free port that demands SCRAM-SHA-256 (and md5 for one role).
"""
from __future__ import annotations

import datetime as dt
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import duration_pb2

from broker.demo_target import free_port
from jitgate.v1 import access_pb2, types_pb2
from tests.cluster import NO_MODEL, ControlPlane, spawn_broker, stop_process

LOCAL_PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "dbname": "test"}
GRACE = "1s"


def local_pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(**LOCAL_PG, connect_timeout=3) as conn:
            conn.execute("select 1")
        return True
    except Exception:
        return False


def pg_bin(name: str) -> str | None:
    found = sorted(glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found[-1] if found else shutil.which(name)


class PrivateCluster:
    """A throw-away PostgreSQL cluster (initdb) on a free port with password authentication."""

    def __init__(self, roles: dict[str, tuple[str, str]], tls: tuple[bytes, bytes] | None = None) -> None:
        self.roles = roles  # name -> (password, "scram-sha-256" | "md5")
        self.tls = tls  # (certificate PEM, key PEM): the cluster also offers TLS
        self.dir = Path(tempfile.mkdtemp(prefix="jgt-pg-"))
        self.port = free_port()
        self._run_as: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as `postgres`
            self._run_as = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.dir, "postgres", "postgres")

    def _run(self, *cmd: str) -> None:
        subprocess.run([*self._run_as, *cmd], check=True, capture_output=True, timeout=60)

    def start(self) -> PrivateCluster:
        data = self.dir / "data"
        self._run(pg_bin("initdb") or "initdb", "-D", str(data), "-U", "postgres", "-A", "trust",
                  "--no-sync", "-E", "UTF8")
        hba = ["local all postgres trust"]
        for name, (_, method) in self.roles.items():
            hba.append(f"host all {name} 127.0.0.1/32 {method}")
        hba.append("host all all 127.0.0.1/32 reject")
        (data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        if self.tls is not None:
            for name, pem in (("server.crt", self.tls[0]), ("server.key", self.tls[1])):
                (data / name).write_bytes(pem)
                os.chmod(data / name, 0o600)
                if self._run_as:
                    shutil.chown(data / name, "postgres", "postgres")
            options += " -c ssl=on"
        self._run(pg_bin("pg_ctl") or "pg_ctl", "-D", str(data), "-w", "-l", str(self.dir / "log"), "-o",
                  options, "start")
        for name, (password, method) in self.roles.items():
            enc = "md5" if method == "md5" else "scram-sha-256"
            self.psql(f"set password_encryption = '{enc}'; create role {name} login password '{password}'")
        return self

    def psql(self, sql: str) -> str:
        out = subprocess.run([*self._run_as, "psql", "-h", str(self.dir), "-p", str(self.port), "-U", "postgres",
                              "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-Atc", sql],
                             check=True, capture_output=True, text=True, timeout=30)
        return out.stdout

    def stop(self) -> None:
        try:
            self._run(pg_bin("pg_ctl") or "pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "stop")
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.dir, ignore_errors=True)


def policy_text(ro: str, rw: str, scram: PrivateCluster | None, extra: dict[str, Any] | None = None) -> str:
    """Auto-approved databases, a 1 s grace so the warning and the cut come quickly; `extra` resources."""
    db = {"kind": "postgres", "address": "127.0.0.1:5432", "database": "test", "labels": {"env": "dev"},
          "roles": [ro, rw], "owners": ["group:sre"]}
    resources: dict[str, Any] = {"testdb": db, "otherdb": {**db}}
    if scram is not None:
        resources["scramdb"] = {"kind": "postgres", "address": f"127.0.0.1:{scram.port}", "database": "postgres",
                                "labels": {"env": "dev"}, "roles": list(scram.roles), "owners": ["group:sre"],
                                "credentials": "env:JGT_PRIVATE_DB"}
    resources.update(extra or {})
    doc = {
        "version": 1,
        "settings": {"grace_period": GRACE, "pending_timeout": "1h", "default_max_extensions": 5,
                     "duration_step": "1m"},
        "users": {"alice": {"groups": ["sre"]}, "bob": {"groups": ["sre"]}, "admin": {"groups": ["admins"]}},
        "resources": resources,
        "rules": [{"name": "dev-auto", "when": 'resource.labels.env == "dev"', "approval": "auto",
                   "max_duration": "8h"}],
    }
    return yaml.safe_dump(doc, sort_keys=False)


@dataclass
class Token:
    token: str
    user: str
    database: str
    grant_id: str


class PgStack:
    """Control plane + pg broker + test roles on the local PostgreSQL (+ a private SCRAM cluster)."""

    def __init__(self, tmp: Path, private: bool = True, broker_args: tuple[str, ...] = (),
                 resources: dict[str, Any] | None = None, broker_env: dict[str, str] | None = None,
                 cp_config: dict[str, Any] | None = None, servers: Any = None) -> None:
        self.tmp = Path(tmp)
        suffix = secrets.token_hex(3)
        self.ro = f"jgt_ro_{suffix}"
        self.rw = f"jgt_rw_{suffix}"
        self.schema = f"jgt_{suffix}"
        self.scram_role = f"jgt_scram_{suffix}"
        self.md5_role = f"jgt_md5_{suffix}"
        self.private_password = secrets.token_urlsafe(12)
        # The private cluster offers TLS with a certificate from a CA of its own; the broker logs in
        # as the SCRAM role over verify-full TLS (its credentials URI says so), as the md5 role in plain.
        from ca.x509 import X509CA

        self.upstream_ca = X509CA.load_or_create(self.tmp / "upstream-ca", b"upstream-ca-passphrase")
        self.upstream_ca_file = self.tmp / "upstream-ca.pem"
        self.upstream_ca_file.write_bytes(self.upstream_ca.ca_cert_pem)
        bundle = self.upstream_ca.issue_server_certificate([], [])
        self.private: PrivateCluster | None = (
            PrivateCluster({self.scram_role: (self.private_password, "scram-sha-256"),
                            self.md5_role: (self.private_password, "md5")},
                           tls=(bundle.cert_pem, bundle.key_pem)) if private else None)
        self.cp: ControlPlane | None = None
        self.broker_proc: subprocess.Popen[bytes] | None = None
        self.broker_dir = self.tmp / "pg-broker"
        self.broker_port = 0
        self._broker_args = broker_args
        self._resources = resources  # more resources in the policy (name -> resource mapping)
        self.broker_env = dict(broker_env or {})  # more variables in the broker's environment
        self.cp_config = {**NO_MODEL, **(cp_config or {})}  # server.yaml keys; every grant here names its duration
        self.servers = servers  # control plane address -> the broker's --server value (a list)

    # -------------------------------------------------------- life cycle

    def start(self) -> PgStack:
        self.prepare()
        policies = self.tmp / "policies.yaml"
        policies.write_text(policy_text(self.ro, self.rw, self.private, self._resources))
        self.cp = ControlPlane(self.tmp / "cp", policies=policies, admins=("admin",), brokers=("broker",),
                               config=self.cp_config)
        self.start_broker()
        return self

    def prepare(self) -> None:
        """The test roles and schema on the local PostgreSQL, and the private cluster."""
        import psycopg

        with psycopg.connect(**LOCAL_PG, autocommit=True) as conn:
            conn.execute(f"create role {self.ro} login")
            conn.execute(f"create role {self.rw} login")
            conn.execute(f"create schema {self.schema} authorization {self.rw}")
            conn.execute(f"grant usage on schema {self.schema} to {self.ro}")
            conn.execute(f"alter default privileges for role {self.rw} in schema {self.schema} "
                         f"grant select on tables to {self.ro}")
            conn.execute(f"alter role {self.ro} set search_path = {self.schema}")
            conn.execute(f"alter role {self.rw} set search_path = {self.schema}")
        if self.private is not None:
            self.private.start()

    def start_broker(self) -> None:
        assert self.cp is not None
        self.ca_file = self.tmp / "jitgate-ca.pem"
        self.ca_file.write_bytes(self.cp.ca_pem)
        addr = self.broker_dir / "listen.addr"
        self.broker_log = self.tmp / "pg-broker.log"
        # The broker makes its TLS certificate from the control plane's CA and keeps the key
        # encrypted with its own passphrase (the passphrase files of the two data directories).
        cmd = [sys.executable, "-m", "cli.main", "pg-broker", "--listen", "127.0.0.1:0",
               "--identity", str(self.cp.identity("broker")),
               "--server", self.servers(self.cp.address) if self.servers else self.cp.address,
               "--data-dir", str(self.broker_dir), "--issue-tls-from", str(self.cp.data.root),
               "--tls-hostname", "localhost", "--credentials-env", "JGT_PRIVATE_DB", *self._broker_args]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env["JGT_PRIVATE_DB"] = self.private_password
        role_env = "JGT_PRIVATE_DB_" + self.scram_role.upper()
        port = self.private.port if self.private is not None else 5432
        env[role_env] = (f"postgresql://{self.scram_role}:{self.private_password}@127.0.0.1:{port}/x"
                         f"?sslmode=verify-full&sslrootcert={self.upstream_ca_file}")
        env.update(self.broker_env)
        self.broker_proc, self.broker_port = spawn_broker(cmd, env, self.broker_log, addr, "pg broker", timeout=30)

    def stop_broker(self) -> int | None:
        if self.broker_proc is None:
            return None
        code = stop_process(self.broker_proc)
        self.broker_proc = None
        return code

    def stop(self) -> None:
        import psycopg

        self.stop_broker()
        if self.cp is not None:
            self.cp.stop()
        if self.private is not None:
            self.private.stop()
        with psycopg.connect(**LOCAL_PG, autocommit=True) as conn:
            conn.execute(
                f"select pg_terminate_backend(pid) from pg_stat_activity where usename in ('{self.ro}', '{self.rw}')"
            )
            conn.execute(f"drop schema if exists {self.schema} cascade")
            for role in (self.ro, self.rw):
                conn.execute(f"drop owned by {role} cascade")
                conn.execute(f"drop role if exists {role}")

    def __enter__(self) -> PgStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def broker_log_text(self) -> str:
        return self.broker_log.read_text(errors="replace")

    # -------------------------------------------------------- grants and tokens

    def client(self, name: str) -> Any:
        assert self.cp is not None
        return self.cp.client(name)

    def grant(self, user: str, resource: str, role: str, seconds: float = 3600) -> types_pb2.AccessRequest:
        """An ACTIVE grant (the test policies auto-approve)."""
        d = duration_pb2.Duration()
        d.FromTimedelta(dt.timedelta(seconds=seconds))
        resp = self.client(user).access.CreateRequest(access_pb2.CreateRequestRequest(
            resource=resource, role=role, duration=d, reason="pg broker test"))
        req = resp.request
        assert req.state == types_pb2.REQUEST_STATE_ACTIVE, req
        return req

    def token(self, user: str, grant_id: str) -> Token:
        resp = self.client(user).access.IssueDatabaseToken(access_pb2.IssueDatabaseTokenRequest(grant_id=grant_id))
        return Token(resp.token, resp.user, resp.database, grant_id)

    def login(self, user: str, resource: str, role: str, seconds: float = 3600) -> Token:
        return self.token(user, self.grant(user, resource, role, seconds).id)

    def dsn(self, token: Token, **over: Any) -> dict[str, Any]:
        """psycopg/libpq keywords for a connection through the broker with TLS verify-full."""
        params: dict[str, Any] = {"host": "localhost", "port": self.broker_port, "user": token.user,
                                  "password": token.token, "dbname": token.database or "test",
                                  "sslmode": "verify-full", "sslrootcert": str(self.ca_file),
                                  "connect_timeout": 10, "gssencmode": "disable"}
        params.update(over)
        return params

    def recordings(self) -> Any:
        from recorder import FileRecordingStore

        return FileRecordingStore(self.broker_dir)
