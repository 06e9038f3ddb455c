"""mTLS only: identity = the certificate's CN; unknown and untrusted callers are refused."""
from __future__ import annotations

import stat
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ca.x509 import X509CA, write_identity_bundle
from jitgate.v1 import access_pb2, admin_pb2
from tests.controlplane.api.conftest import refused


def _whoami(channel: grpc.Channel) -> access_pb2.WhoAmIResponse:
    from jitgate.v1 import access_pb2_grpc

    return access_pb2_grpc.AccessServiceStub(channel).WhoAmI(access_pb2.WhoAmIRequest(), timeout=5)


def test_roles_come_from_the_server(cp):
    me = cp.client("ada").access.WhoAmI(access_pb2.WhoAmIRequest())
    assert (me.name, list(me.groups), "admin" in me.roles) == ("ada", ["admins"], True)
    assert "admin" in cp.client("admin").access.WhoAmI(access_pb2.WhoAmIRequest()).roles  # server config
    assert list(cp.client("broker").access.WhoAmI(access_pb2.WhoAmIRequest()).roles) == ["broker"]
    assert "admin" not in cp.client("alice").access.WhoAmI(access_pb2.WhoAmIRequest()).roles


def test_unknown_identity_is_unauthenticated(cp):
    detail = refused(lambda: cp.client("mallory").access.WhoAmI(access_pb2.WhoAmIRequest()),
                     grpc.StatusCode.UNAUTHENTICATED)
    assert "`mallory`" in detail and "not known" in detail


def test_foreign_ca_certificate_is_rejected(cp, tmp_path: Path):
    foreign = X509CA.load_or_create(tmp_path / "foreign-ca", b"foreign passphrase 0123456789abcdef")
    bundle = foreign.issue_client_certificate("alice")  # a name the server knows, from the wrong CA
    out = write_identity_bundle(bundle, foreign.ca_cert_pem, tmp_path / "alice-foreign")
    creds = grpc.ssl_channel_credentials(
        root_certificates=cp.ca_pem,  # the client trusts the real server; the server must not trust it
        private_key=(out / "key.pem").read_bytes(), certificate_chain=(out / "cert.pem").read_bytes())
    with grpc.secure_channel(cp.address, creds) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _whoami(channel)
    assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


def test_no_client_certificate_is_rejected(cp):
    with grpc.secure_channel(cp.address, grpc.ssl_channel_credentials(root_certificates=cp.ca_pem)) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _whoami(channel)
        assert info.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)
        with pytest.raises(grpc.RpcError):
            health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)


def test_plaintext_is_rejected(cp):
    with grpc.insecure_channel(cp.address) as channel:
        with pytest.raises(grpc.RpcError) as info:
            _whoami(channel)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE


def test_health_and_reflection_answer(cp):
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    channel = cp.channel("alice")
    health = health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(service="jitgate.v1.AccessService"))
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"jitgate.v1.AccessService", "jitgate.v1.BrokerService", "jitgate.v1.AuditService",
            "grpc.health.v1.Health"} <= names


def test_issue_identity_over_grpc_needs_admin(cp):
    req = admin_pb2.IssueIdentityRequest(name="bob", days=1)
    refused(lambda: cp.client("alice").admin.IssueIdentity(req), grpc.StatusCode.PERMISSION_DENIED)
    bundle = cp.client("ada").admin.IssueIdentity(req)
    creds = grpc.ssl_channel_credentials(bundle.ca_pem.encode(), bundle.key_pem.encode(), bundle.cert_pem.encode())
    with grpc.secure_channel(cp.address, creds) as channel:
        assert _whoami(channel).name == "bob"
    refused(lambda: cp.client("ada").admin.IssueIdentity(admin_pb2.IssueIdentityRequest(name=" bad")),
            grpc.StatusCode.INVALID_ARGUMENT)
    lines = cp.client("alice").admin.GetSshCa(admin_pb2.GetSshCaRequest(upstream=True)).public_key_lines
    assert lines and lines[0].startswith("ssh-ed25519 ") and "upstream" in lines[0]


def test_server_key_is_encrypted_at_rest(cp):
    key = cp.data.server_dir / "key.pem"
    assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_plain_server_key_from_an_earlier_version_is_replaced(tmp_path: Path):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from controlplane.identity import DataDir, init_pki

    data = DataDir(tmp_path / "data")
    first = init_pki(data)
    key_path = data.server_dir / "key.pem"
    key_path.write_bytes(first.server_key_pem)  # what earlier versions stored: the key in clear
    second = init_pki(data)
    assert key_path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert second.server_cert_pem != first.server_cert_pem  # a new key, so a new certificate
    cert_key = x509.load_pem_x509_certificate(second.server_cert_pem).public_key()
    in_memory = serialization.load_pem_private_key(second.server_key_pem, password=None).public_key()
    raw = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert_key.public_bytes(*raw) == in_memory.public_bytes(*raw)
    assert init_pki(data).server_cert_pem == second.server_cert_pem  # kept from now on
