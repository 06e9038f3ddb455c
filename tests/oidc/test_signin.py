"""`jitgate login` against a real OpenID provider (oidc-provider, npm) and a real control plane.

One provider and one control plane serve the module. The browser leg runs over real HTTP
(`$BROWSER` is a script that follows the redirects and posts the login form); the device
leg the same way from the printed code. Refusals use tokens signed with keys the test
holds: the provider's own key (which it would never use for an expired or foreign-audience
token) and keys the provider does not publish.
"""
from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from joserfc import jwt

from jitgate.status import reason_of
from jitgate.v1 import access_pb2, audit_pb2, signin_pb2, signin_pb2_grpc, types_pb2
from tests.cluster import NO_MODEL, REPO, ControlPlane
from tests.oidc.provider import (
    CLIENT_ID,
    OidcProvider,
    browser_script,
    device_login,
    missing,
    new_key,
    wait_for,
)
from tests.support import require

ACCOUNTS = {
    # dana is not in policies.yaml: her groups come from the provider only.
    "dana": {"password": "dana-pw", "email": "dana@example.com", "email_verified": True,
             "groups": ["idp-sre", "idp-unmapped"], "otp": "246810"},
    # alice is in policies.yaml (manager, attributes); the provider adds a group.
    "alice": {"password": "alice-pw", "email": "alice@example.com", "email_verified": False,
              "groups": ["idp-security"]},
    "broker": {"password": "broker-pw", "email": "b@example.com", "groups": []},
}
GROUP_MAP = {"idp-sre": "sre", "idp-security": "security"}


@pytest.fixture(scope="module")
def idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OidcProvider]:
    why = missing()
    require(why is None, why or "")
    with OidcProvider(tmp_path_factory.mktemp("idp"), ACCOUNTS) as provider:
        yield provider


# The example policies plus two step-up rules (matched only by these tests' reasons).
STEP_UP_RULES = """
  - name: mfa-to-ask
    when: resource.name == "demo" && request.reason.startsWith("mfa:")
    approval: auto
    step_up: {for: [activate], mfa: true}
  - name: fresh-to-approve
    when: resource.name == "web-dev-01" && request.reason.startsWith("fresh:")
    approval: {levels: [{approvers: [group:sre]}]}
    step_up: {for: [approve], max_age: 10m}
"""


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory, idp: OidcProvider) -> Iterator[ControlPlane]:
    tmp = tmp_path_factory.mktemp("oidc-cp")
    text = (REPO / "policies.yaml").read_text()
    policies = tmp / "policies.yaml"
    policies.write_text(text.replace("\ntests:\n", STEP_UP_RULES + "\ntests:\n", 1))
    config = {**NO_MODEL,  # every request here names its duration
              "oidc": {"issuer": idp.issuer, "client_id": CLIENT_ID, "group_map": GROUP_MAP,
                       "certificate_hours": 8, "max_certificate_hours": 12, "jwks_min_refresh_seconds": 1}}
    with ControlPlane(tmp, policies, config=config) as plane:
        yield plane


@pytest.fixture(scope="module")
def login_addr(cp: ControlPlane) -> str:
    (cp.tmp / "ca.pem").write_bytes(cp.ca_pem)  # what an admin hands people with the login address
    return wait_for(cp.data.root / "login.addr")


@pytest.fixture(scope="module")
def signin(cp: ControlPlane, login_addr: str) -> Iterator[signin_pb2_grpc.SignInServiceStub]:
    with grpc.secure_channel(login_addr, grpc.ssl_channel_credentials(root_certificates=cp.ca_pem)) as channel:
        yield signin_pb2_grpc.SignInServiceStub(channel)


def _env(cp: ControlPlane, login_addr: str, identity: Path, **extra: str) -> dict[str, str]:
    env = {**cp.env, "JITGATE_IDENTITY": str(identity), "JITGATE_SERVER": cp.address,
           "JITGATE_LOGIN_SERVER": login_addr, "JITGATE_CA": str(cp.tmp / "ca.pem")}
    env.pop("BROWSER", None)
    env.update(extra)
    return env


def jitgate(*args: str, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _csr() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _claims(idp: OidcProvider, nonce: str, **over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": idp.issuer, "sub": "dana", "aud": CLIENT_ID, "exp": now + 300, "iat": now, "nonce": nonce,
              "auth_time": now, "preferred_username": "dana", "email": "dana@example.com",
              "email_verified": True, "groups": ["idp-sre"]}
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def _signed(key: Any, claims: dict[str, Any], kid: str | None = None) -> str:
    return jwt.encode({"alg": "ES256", "kid": kid or key.kid}, claims, key)


def _complete(signin: Any, token: str, nonce: str, csr: str | None = None, hours: int = 0) -> Any:
    return signin.CompleteSignIn(signin_pb2.CompleteSignInRequest(
        id_token=token, nonce=nonce, csr_pem=csr if csr is not None else _csr(), hours=hours), timeout=20)


def _refused(signin: Any, token_of: Any, code: str, text: str) -> None:
    nonce = signin.BeginSignIn(signin_pb2.BeginSignInRequest(), timeout=20).nonce
    with pytest.raises(grpc.RpcError) as e:
        _complete(signin, token_of(nonce), nonce)
    assert reason_of(e.value) == code, e.value.details()
    assert text in e.value.details()


def _events(cp: ControlPlane, etype: str) -> list[Any]:
    resp = cp.client("admin").audit.ListEvents(audit_pb2.ListEventsRequest(type=etype, page_size=500))
    return list(resp.events)


# -- end to end ---------------------------------------------------------------------------------------


def test_login_with_a_browser_gives_a_short_lived_identity_the_policies_accept(
        cp: ControlPlane, idp: OidcProvider, login_addr: str, tmp_path: Path) -> None:
    identity = tmp_path / "dana"
    browser = browser_script(tmp_path, sys.executable, "dana", "dana-pw", otp="246810")
    env = _env(cp, login_addr, identity, BROWSER=str(browser))
    done = jitgate("login", env=env)
    assert done.returncode == 0, done.stderr
    assert "Signed in as dana (groups: sre)" in done.stdout
    cert = x509.load_pem_x509_certificate((identity / "cert.pem").read_bytes())
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "dana"
    assert cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "oidc"
    left = cert.not_valid_after_utc - dt.datetime.now(dt.UTC)
    assert 7.9 * 3600 < left.total_seconds() <= 8 * 3600  # the server's default, 8 h
    assert (identity / "key.pem").stat().st_mode & 0o077 == 0

    who = jitgate("whoami", "--output", "json", env=env)
    assert who.returncode == 0, who.stderr
    me = json.loads(who.stdout)
    assert (me["name"], me["groups"], me["source"]) == ("dana", ["sre"], "oidc")
    assert "signed in (oidc)" in jitgate("whoami", env=env).stdout

    # Not in policies.yaml, yet a user with her provider groups: the dev rule grants at once,
    # and `owner` (group:sre owns `demo`) makes her an approver.
    req = jitgate("request", "demo", "--login", "demo", "--duration", "30m", "--reason", "signed-in check",
                  "--output", "json", env=env)
    assert req.returncode == 0, req.stderr
    assert json.loads(req.stdout)["request"]["state"] == "REQUEST_STATE_ACTIVE"
    assert "approver" in me["roles"]

    ok = [e for e in _events(cp, "signin.succeeded") if e.actor == "dana"]
    assert ok and json.loads(ok[-1].data_json)["amr"] == ["pwd", "otp", "mfa"]
    assert json.loads(ok[-1].data_json)["email"] == "dana@example.com"

    out = jitgate("logout", env=env)
    assert out.returncode == 0 and not (identity / "key.pem").exists()
    after = jitgate("whoami", env=env)
    assert after.returncode == 1


def test_headless_login_uses_the_device_grant(cp: ControlPlane, idp: OidcProvider, login_addr: str,
                                              tmp_path: Path) -> None:
    identity = tmp_path / "alice"
    env = _env(cp, login_addr, identity)
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "login", "--headless", "--hours", "2"], cwd=REPO,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        m = re.search(r"open (\S+) on any device and enter the code (\S+)", line)
        assert m, line
        threading.Thread(target=device_login, args=(m.group(1), m.group(2), "alice", "alice-pw"), daemon=True).start()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    # alice's policy entry (groups sre, oncall; manager bob) joined by the provider's mapped group.
    assert "Signed in as alice (groups: security)" in out
    cert = x509.load_pem_x509_certificate((identity / "cert.pem").read_bytes())
    assert (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() <= 2 * 3600
    me = cp_client_whoami(env)
    assert me["source"] == "oidc" and me["groups"] == ["oncall", "security", "sre"]
    # alice's provider says her email is not verified: it is not kept for notifications.
    ok = [json.loads(e.data_json) for e in _events(cp, "signin.succeeded") if e.actor == "alice"]
    assert ok and ok[-1]["email"] == ""


def cp_client_whoami(env: dict[str, str]) -> dict[str, Any]:
    who = jitgate("whoami", "--output", "json", env=env)
    assert who.returncode == 0, who.stderr
    return dict(json.loads(who.stdout))


def test_key_rotation_at_the_provider_is_followed(cp: ControlPlane, idp: OidcProvider, login_addr: str,
                                                  tmp_path: Path) -> None:
    new = idp.rotate()  # the provider now signs with a key the control plane has not fetched
    identity = tmp_path / "dana-rotated"
    browser = browser_script(tmp_path, sys.executable, "dana", "dana-pw")
    done = jitgate("login", env=_env(cp, login_addr, identity, BROWSER=str(browser)))
    assert done.returncode == 0, done.stderr
    last = json.loads(_events(cp, "signin.succeeded")[-1].data_json)
    assert last["kid"] == new.kid  # the control plane fetched the provider's new key set


# -- refusals -------------------------------------------------------------------------------------------


def test_wrong_issuer_is_refused(signin: Any, idp: OidcProvider) -> None:
    other = new_key("other")
    _refused(signin, lambda n: _signed(other, _claims(idp, n, iss="https://evil.example.com")),
             "signin.wrong_issuer", "issued by `https://evil.example.com`")


def test_wrong_audience_is_refused(signin: Any, idp: OidcProvider) -> None:
    _refused(signin, lambda n: _signed(idp.signing_key, _claims(idp, n, aud="another-client")),
             "signin.wrong_audience", "for client `another-client`")


def test_expired_token_is_refused(signin: Any, idp: OidcProvider) -> None:
    past = int(time.time()) - 3600
    _refused(signin, lambda n: _signed(idp.signing_key, _claims(idp, n, iat=past - 60, exp=past)),
             "signin.expired", "expired")


def test_bad_signature_is_refused(signin: Any, idp: OidcProvider) -> None:
    forger = new_key("forger")
    _refused(signin, lambda n: _signed(forger, _claims(idp, n), kid=idp.signing_key.kid),
             "signin.bad_signature", "does not verify")


def test_unknown_key_is_refused(signin: Any, idp: OidcProvider) -> None:
    stranger = new_key("never-published")
    _refused(signin, lambda n: _signed(stranger, _claims(idp, n)), "signin.unknown_key", "`never-published`")


def test_replayed_nonce_is_refused(cp: ControlPlane, signin: Any, idp: OidcProvider) -> None:
    nonce = signin.BeginSignIn(signin_pb2.BeginSignInRequest(), timeout=20).nonce
    token = _signed(idp.signing_key, _claims(idp, nonce))
    first = _complete(signin, token, nonce)
    assert first.name == "dana" and first.email == "dana@example.com"
    with pytest.raises(grpc.RpcError) as e:
        _complete(signin, token, nonce)
    assert reason_of(e.value) == "signin.nonce" and "already used" in e.value.details()
    refused = [json.loads(ev.data_json) for ev in _events(cp, "signin.refused")]
    assert any(r["code"] == "signin.nonce" for r in refused)


def test_a_nonce_the_server_never_gave_is_refused(signin: Any, idp: OidcProvider) -> None:
    made_up = "n" * 43
    with pytest.raises(grpc.RpcError) as e:
        _complete(signin, _signed(idp.signing_key, _claims(idp, made_up)), made_up)
    assert reason_of(e.value) == "signin.nonce" and "not handed out" in e.value.details()


def test_token_nonce_must_be_this_sign_ins(signin: Any, idp: OidcProvider) -> None:
    _refused(signin, lambda n: _signed(idp.signing_key, _claims(idp, "someone-elses")), "signin.nonce",
             "not the one")


def test_inputs_are_bounded(signin: Any, idp: OidcProvider) -> None:
    _refused(signin, lambda n: "x" * 20000, "signin.token_invalid", "larger than 16384 bytes")
    nonce = signin.BeginSignIn(signin_pb2.BeginSignInRequest(), timeout=20).nonce
    with pytest.raises(grpc.RpcError) as e:
        _complete(signin, _signed(idp.signing_key, _claims(idp, nonce)), nonce, csr="A" * 9000)
    assert reason_of(e.value) == "signin.bad_csr"
    with pytest.raises(grpc.RpcError) as e:
        _complete(signin, _signed(idp.signing_key, _claims(idp, nonce)), nonce, hours=13)
    assert reason_of(e.value) == "signin.bad_lifetime" and "1 to 12 hours" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:  # the listener's own message bound
        _complete(signin, "y" * 100_000, nonce)
    assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_a_broker_name_cannot_be_signed_in(signin: Any, idp: OidcProvider) -> None:
    _refused(signin, lambda n: _signed(idp.signing_key, _claims(idp, n, preferred_username="broker", sub="b")),
             "signin.name_reserved", "broker identity")


def test_the_sign_in_listener_serves_nothing_else_and_the_api_still_needs_a_certificate(
        cp: ControlPlane, login_addr: str) -> None:
    from jitgate.v1 import access_pb2_grpc

    creds = grpc.ssl_channel_credentials(root_certificates=cp.ca_pem)
    with grpc.secure_channel(login_addr, creds) as channel:
        with pytest.raises(grpc.RpcError) as e:
            access_pb2_grpc.AccessServiceStub(channel).WhoAmI(access_pb2.WhoAmIRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    with grpc.secure_channel(cp.address, creds) as channel:
        with pytest.raises(grpc.RpcError) as e:
            access_pb2_grpc.AccessServiceStub(channel).WhoAmI(access_pb2.WhoAmIRequest(), timeout=10)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE  # the TLS handshake wants a client certificate


def test_login_refuses_to_overwrite_an_admin_bundle(cp: ControlPlane, login_addr: str) -> None:
    bundle = cp.identity("alice")
    done = jitgate("login", "--headless", env=_env(cp, login_addr, bundle))
    assert done.returncode == 1 and "issued by an admin" in done.stderr
    assert jitgate("logout", env=_env(cp, login_addr, bundle)).returncode == 1
    assert (bundle / "key.pem").exists()


def test_email_of_finds_a_signed_in_person(cp: ControlPlane, signin: Any, idp: OidcProvider) -> None:
    from controlplane.signin.service import email_of
    from controlplane.store import open_store

    nonce = signin.BeginSignIn(signin_pb2.BeginSignInRequest(), timeout=20).nonce
    _complete(signin, _signed(idp.signing_key, _claims(idp, nonce)), nonce)
    store = open_store(str(cp.data.db_path))
    try:
        assert email_of(store, "dana") == "dana@example.com"
        assert email_of(store, "nobody") is None
    finally:
        store.close()



# -- step-up ---------------------------------------------------------------------------------------------


def _sign_in_as(signin: Any, idp: OidcProvider, tmp: Path, name: str, groups: list[str], amr: list[str],
                auth_age: int = 0) -> Path:
    """Sign `name` in with a token signed by the provider's key; the bundle written like `jitgate login` does."""
    from ca.x509 import CertBundle, write_identity_bundle

    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")])).sign(key, hashes.SHA256())
    nonce = signin.BeginSignIn(signin_pb2.BeginSignInRequest(), timeout=20).nonce
    claims = _claims(idp, nonce, sub=name, preferred_username=name, email=f"{name}@example.com", groups=groups,
                     amr=amr, auth_time=int(time.time()) - auth_age)
    done = _complete(signin, _signed(idp.signing_key, claims), nonce,
                     csr=csr.public_bytes(serialization.Encoding.PEM).decode())
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return write_identity_bundle(CertBundle(done.cert_pem.encode(), key_pem), done.ca_pem.encode(), tmp / name)


def _stub(cp: ControlPlane, bundle: Path) -> Any:
    from cli.client import connect

    return connect(bundle, cp.address)


def test_a_rule_can_require_mfa_to_ask(cp: ControlPlane, signin: Any, idp: OidcProvider, tmp_path: Path) -> None:
    ask = access_pb2.CreateRequestRequest(resource="demo", login="demo", reason="mfa: look",
                                          duration=_duration(1800))
    client = _stub(cp, _sign_in_as(signin, idp, tmp_path, "erin", ["idp-sre"], ["pwd"]))
    try:
        with pytest.raises(grpc.RpcError) as e:
            client.access.CreateRequest(ask, timeout=20)
        assert reason_of(e.value) == "signin.step_up"
        assert "rule `mfa-to-ask` requires a sign-in with multi-factor authentication" in e.value.details()
    finally:
        client.close()
    refused = [json.loads(ev.data_json) for ev in _events(cp, "signin.step_up_refused") if ev.actor == "erin"]
    assert refused and refused[-1]["action"] == "activate"
    client = _stub(cp, _sign_in_as(signin, idp, tmp_path / "again", "erin", ["idp-sre"], ["pwd", "otp", "mfa"]))
    try:
        made = client.access.CreateRequest(ask, timeout=20)
        assert made.request.state == types_pb2.REQUEST_STATE_ACTIVE
    finally:
        client.close()


def test_a_rule_can_require_a_recent_sign_in_to_approve(cp: ControlPlane, signin: Any, idp: OidcProvider,
                                                       tmp_path: Path) -> None:
    asker = _stub(cp, _sign_in_as(signin, idp, tmp_path, "fay", [], ["pwd"]))
    try:
        made = asker.access.CreateRequest(access_pb2.CreateRequestRequest(
            resource="web-dev-01", login="deploy", reason="fresh: deploy", duration=_duration(1800)), timeout=20)
    finally:
        asker.close()
    rid = made.request.id
    stale = _stub(cp, _sign_in_as(signin, idp, tmp_path, "gus", ["idp-sre"], ["pwd"], auth_age=3600))
    try:
        with pytest.raises(grpc.RpcError) as e:
            stale.access.Approve(access_pb2.DecideRequest(id=rid), timeout=20)
        assert reason_of(e.value) == "signin.step_up"
        assert "requires a sign-in within 10m to approve; yours was 1h" in e.value.details()
    finally:
        stale.close()
    fresh = _stub(cp, _sign_in_as(signin, idp, tmp_path / "again", "gus", ["idp-sre"], ["pwd"]))
    try:
        approved = fresh.access.Approve(access_pb2.DecideRequest(id=rid), timeout=20)
        assert approved.activated_at.seconds > 0
    finally:
        fresh.close()


def _duration(seconds: int) -> Any:
    from google.protobuf.duration_pb2 import Duration

    return Duration(seconds=seconds)


def test_unknown_key_ids_refetch_the_key_set_at_most_once_per_interval(idp: OidcProvider) -> None:
    from controlplane.errors import JitError
    from controlplane.signin.config import OidcConfig
    from controlplane.signin.idtoken import ProviderKeys

    clock = [1000.0]
    keys = ProviderKeys(OidcConfig(issuer=idp.issuer, client_id=CLIENT_ID, jwks_min_refresh_seconds=30),
                        monotonic=lambda: clock[0])
    assert keys.key_for(idp.signing_key.kid).kid == idp.signing_key.kid
    assert keys.fetches == 1
    for i in range(20):  # a flood of made-up key ids costs the provider nothing more
        with pytest.raises(JitError) as e:
            keys.key_for(f"made-up-{i}")
        assert e.value.code == "signin.unknown_key"
    assert keys.fetches == 1
    clock[0] += 31
    with pytest.raises(JitError):
        keys.key_for("made-up-again")
    assert keys.fetches == 2  # one refetch once the interval has passed
    with pytest.raises(JitError):
        keys.key_for("and-again")
    assert keys.fetches == 2
