"""Stable error codes on the wire (issue 14, point 5): a refusal carries its code as google.rpc
ErrorInfo.reason, read by the real CLI and the broker client over mTLS; a refused identity is told
apart from a server that is down; a denied `jitgate request` exits with its documented status."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from broker.cpclient import ControlPlaneClient, ControlPlaneError
from ca.x509 import X509CA, write_identity_bundle
from cli import exits
from jitgate.errors import DOMAIN
from jitgate.status import reason_of
from jitgate.v1 import access_pb2
from tests.controlplane.api.conftest import jitgate

FOREIGN_PASSPHRASE = b"foreign passphrase 0123456789abcdef"


def one_error_line(proc) -> str:
    assert proc.returncode == exits.ERROR, proc
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    return lines[0]


def test_a_refusal_carries_its_code_in_error_info(cp):
    with pytest.raises(grpc.RpcError) as info:
        cp.client("mallory").access.WhoAmI(access_pb2.WhoAmIRequest())
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert reason_of(info.value) == "identity.unknown"
    from grpc_status import rpc_status

    status = rpc_status.from_call(info.value)  # the standard reader sees the same detail
    assert status is not None and any(d.type_url.endswith("google.rpc.ErrorInfo") for d in status.details)
    assert DOMAIN == "jitgate.dev"


def test_the_cli_shows_the_code_of_a_refusal(cp):
    out = jitgate("request", "web-prod-01", "--login", "deploy", "-d", "30m", "-r", "codes",
                  env=cp.cli_env("alice")).stdout
    request_id = out.split()[1].rstrip(":")
    line = one_error_line(jitgate("approve", request_id, env=cp.cli_env("alice"), check=False))
    assert line.startswith("error: PERMISSION_DENIED: ") and line.endswith(" [approval.self]"), line


def test_the_broker_client_reads_the_code(cp):
    async def authorize() -> ControlPlaneError:
        client = ControlPlaneClient.from_identity_dir(cp.address, cp.identity("broker"))
        try:
            with pytest.raises(ControlPlaneError) as info:
                await client.authorize_session(kind="postgres", resource="dev-db", role="readonly",
                                               client_address="127.0.0.1:5", channel="pg", db_token="not-a-token")
            return info.value
        finally:
            await client.close()

    error = asyncio.run(authorize())
    assert (error.code, error.reason, error.unavailable) == ("UNAUTHENTICATED", "credential.invalid", False)


def test_a_denied_request_exits_with_its_documented_status(cp):
    for args in ((), ("--dry-run",)):
        proc = jitgate("request", "web-prod-01", "--login", "deploy", "-d", "30m", "-r", "look", *args,
                       env=cp.cli_env("cora"), check=False)
        assert proc.returncode == exits.DENIED == 4, proc
        assert "DENIED" in proc.stdout and "contractors have no production access" in proc.stdout
    proc = jitgate("request", "web-prod-01", "--login", "deploy", "-d", "30m", "-r", "look", "-o", "json",
                   env=cp.cli_env("cora"), check=False)
    assert proc.returncode == exits.DENIED
    assert json.loads(proc.stdout)["request"]["state"] == "REQUEST_STATE_DENIED"
    allowed = jitgate("request", "web-dev-01", "--login", "deploy", "-d", "30m", "-r", "fine",
                      env=cp.cli_env("alice"), check=False)
    assert allowed.returncode == exits.OK, allowed


def _foreign_bundle(cp, tmp_path: Path, ca_pem: bytes, name: str) -> Path:
    foreign = X509CA.load_or_create(tmp_path / "foreign-ca", FOREIGN_PASSPHRASE)
    out = write_identity_bundle(foreign.issue_client_certificate("alice"), ca_pem, tmp_path / name)
    return out


def test_a_certificate_from_a_foreign_ca_is_named_as_refused(cp, tmp_path: Path):
    # ca.pem is the server's CA, cert.pem (a name the server knows) from another CA: the server closes
    # the handshake. The CLI says so instead of "failed to connect ... Socket closed".
    bundle = _foreign_bundle(cp, tmp_path, cp.ca_pem, "alice-foreign")
    # whoami: unary; requests --identity: a command that connects on its own; audit export: a stream.
    own = ("--identity", str(bundle))
    for command in (("whoami",), ("requests", *own), ("audit", "export", *own)):
        line = one_error_line(jitgate(*command, env={**cp.cli_env("alice"), "JITGATE_IDENTITY": str(bundle)},
                                      check=False))
        assert line.startswith("error: UNAUTHENTICATED: the identity's certificate "), line
        assert f"`{bundle / 'cert.pem'}` was not issued by the CA in `{bundle / 'ca.pem'}`" in line, line
        assert "Socket closed" not in line


def test_a_refusal_seen_only_in_the_handshake_is_named(cp, tmp_path: Path):
    # A bundle that is consistent on its own (cert.pem chains to the first CA of ca.pem, which also
    # lists the server's CA, so the client trusts the server) but the server trusts only its own CA:
    # only the handshake tells, and the probe reads it.
    foreign = X509CA.load_or_create(tmp_path / "foreign-ca", FOREIGN_PASSPHRASE)
    bundle = _foreign_bundle(cp, tmp_path, foreign.ca_cert_pem + cp.ca_pem, "alice-mixed")
    line = one_error_line(jitgate("whoami", env={**cp.cli_env("alice"), "JITGATE_IDENTITY": str(bundle)},
                                  check=False))
    assert line.startswith(f"error: UNAUTHENTICATED: the server at {cp.address} refused the identity's "
                           f"certificate `{bundle / 'cert.pem'}` during the TLS handshake"), line


def test_an_identity_of_another_control_plane_is_named(cp, tmp_path: Path):
    foreign = X509CA.load_or_create(tmp_path / "foreign-ca", FOREIGN_PASSPHRASE)
    bundle = _foreign_bundle(cp, tmp_path, foreign.ca_cert_pem, "alice-elsewhere")
    line = one_error_line(jitgate("whoami", env={**cp.cli_env("alice"), "JITGATE_IDENTITY": str(bundle)},
                                  check=False))
    assert line.startswith(f"error: UNAUTHENTICATED: the server at {cp.address} presented a certificate not "
                           f"issued by `{bundle / 'ca.pem'}`"), line


def test_a_server_that_is_down_is_still_unavailable(cp):
    line = one_error_line(jitgate("whoami", "--server", "127.0.0.1:1", env=cp.cli_env("alice"), check=False))
    assert line.startswith("error: UNAVAILABLE: ") and "UNAUTHENTICATED" not in line, line
