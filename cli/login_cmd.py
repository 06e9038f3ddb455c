"""`jitgate login` / `jitgate logout`: a short-lived identity from the organisation's OpenID provider.

Like `tsh login`: the control plane's sign-in listener (`--login-server`, TLS checked
against the control plane's CA, `--ca`) hands out the provider, the client id and a
one-time nonce; the CLI runs the OIDC flow as a public client, makes a key pair that
never leaves this machine, and trades the ID token and a CSR for a client certificate
(default 8 h, at most what the server allows) written as an identity bundle.

- With a browser: authorization code with PKCE (S256; verifier and challenge by authlib) through a loopback
  redirect on 127.0.0.1 (RFC 8252); the browser is the one Python's `webbrowser`
  finds (`$BROWSER` picks one). No browser found: the device flow, as `--headless`.
- `--headless`: the device authorization grant (RFC 8628), run by the control plane
  (its device code never reaches this machine, which binds the token to this sign-in:
  the grant has no nonce): open the printed address anywhere and enter the code.

The bundle directory also holds `signin.json` (where and when); a bundle issued by an
admin (`admin issue-identity`) is never overwritten or deleted by these commands.
"""
from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import queue
import threading
import time
import webbrowser
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from cli.client import DEFAULT_SERVER, SERVER_ENV, error_line, fail, handle_errors, identity_dir
from cli.output import echo

LOGIN_SERVER_ENV = "JITGATE_LOGIN_SERVER"
CA_ENV = "JITGATE_CA"
SIGNIN_FILE = "signin.json"
SOURCE_UNIT = "oidc"  # the OU the control plane gives signed-in certificates
MAX_HTTP_BYTES = 256 * 1024


def login_address(value: str | None) -> str:
    """--login-server, else $JITGATE_LOGIN_SERVER, else the control plane's port + 1."""
    if value:
        return value
    env = os.environ.get(LOGIN_SERVER_ENV)
    if env:
        return env
    host, _, port = (os.environ.get(SERVER_ENV) or DEFAULT_SERVER).rpartition(":")
    return f"{host}:{int(port) + 1}" if port.isdigit() else DEFAULT_SERVER


def identity_source(bundle: Path) -> tuple[str, dt.datetime | None]:
    """("oidc" | "bundle" | "none", the certificate's expiry) of an identity directory."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        cert = x509.load_pem_x509_certificate((bundle / "cert.pem").read_bytes())
    except (OSError, ValueError):
        return "none", None
    units = [a.value for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)]
    return ("oidc" if SOURCE_UNIT in units else "bundle"), cert.not_valid_after_utc


@dataclass
class Flow:
    """What BeginSignIn said, and the provider's endpoints from its discovery document."""

    issuer: str
    client_id: str
    scopes: list[str]
    nonce: str
    max_hours: int
    authorization_endpoint: str
    token_endpoint: str


def _http() -> Any:
    import httpx

    return httpx.Client(timeout=15.0, follow_redirects=False)


def _json(resp: Any, what: str) -> dict[str, Any]:
    if len(resp.content) > MAX_HTTP_BYTES:
        fail(f"the identity provider's {what} answer is larger than {MAX_HTTP_BYTES} bytes")
    try:
        data = resp.json()
    except ValueError:
        fail(f"the identity provider's {what} answered HTTP {resp.status_code} without JSON")
    if not isinstance(data, dict):
        fail(f"the identity provider's {what} answer is not a JSON object")
    return data


def discover(issuer: str) -> dict[str, Any]:
    import httpx

    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        with _http() as http:
            doc = _json(http.get(url), "discovery document")
    except httpx.HTTPError as e:
        fail(f"cannot reach the identity provider at `{url}`: {type(e).__name__}")
    if doc.get("issuer") != issuer:
        fail(f"the identity provider at `{url}` calls itself `{doc.get('issuer')}`, not `{issuer}`")
    return doc


# -- browser: authorization code + PKCE through a loopback redirect ---------------------------------


class _Callback(http.server.BaseHTTPRequestHandler):
    """The loopback redirect: hands `code`/`state`/`error` to the waiting login, answers a plain page."""

    results: queue.Queue[dict[str, str]]

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self.send_error(404)
            return
        query = {k: v[0][:4096] for k, v in parse_qs(parts.query).items()}
        ok = "code" in query
        body = ("Signed in to jitgate: you may close this window." if ok
                else "jitgate sign-in failed: see your terminal.").encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.results.put(query)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the terminal shows only what the user needs."""


def browser_flow(flow: Flow, timeout: float) -> str:
    """The ID token from the authorization code flow with PKCE (S256) and a loopback redirect."""
    import httpx
    from authlib.common.security import generate_token
    from authlib.common.urls import add_params_to_uri
    from authlib.oauth2.rfc7636 import create_s256_code_challenge

    results: queue.Queue[dict[str, str]] = queue.Queue()
    handler = type("Callback", (_Callback,), {"results": results})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
        verifier, state = generate_token(64), generate_token(32)
        url = add_params_to_uri(flow.authorization_endpoint, [
            ("response_type", "code"), ("client_id", flow.client_id), ("redirect_uri", redirect_uri),
            ("scope", " ".join(flow.scopes)), ("state", state), ("nonce", flow.nonce),
            ("code_challenge", create_s256_code_challenge(verifier)), ("code_challenge_method", "S256")])
        echo("Opening your browser to sign in. If it does not open, visit:", err=True)
        echo(f"  {url}", err=True)
        opener = threading.Thread(target=webbrowser.open, args=(url,), daemon=True)
        opener.start()
        try:
            got = results.get(timeout=timeout)
        except queue.Empty:
            fail(f"no answer from the browser within {int(timeout)} s; try again or use --headless")
        if got.get("state") != state:
            fail("the sign-in answer does not match this login (state differs); try again")
        if "error" in got:
            fail(f"the identity provider refused the sign-in: {got['error']}: {got.get('error_description', '')}")
        with _http() as client:
            token = _json(client.post(flow.token_endpoint, data={
                "grant_type": "authorization_code", "code": got.get("code", ""), "redirect_uri": redirect_uri,
                "client_id": flow.client_id, "code_verifier": verifier}), "token endpoint")
    except httpx.HTTPError as e:
        fail(f"cannot reach the identity provider: {type(e).__name__}")
    finally:
        server.shutdown()
        server.server_close()
    if "error" in token:
        fail(f"the identity provider refused the code: {token['error']}: {token.get('error_description', '')}")
    id_token = token.get("id_token")
    if not isinstance(id_token, str):
        fail("the identity provider answered without an ID token (is `openid` among the scopes?)")
    return id_token


# -- the commands ---------------------------------------------------------------------------------------


def _headless(stub: Any, begun: Any, csr_pem: str, hours: int, timeout: float) -> Any:
    """Show the code, then ask the control plane until the person has signed in elsewhere."""
    import grpc

    from jitgate.status import reason_of
    from jitgate.v1 import signin_pb2

    echo(f"To sign in, open {begun.verification_uri} on any device and enter the code {begun.user_code}", err=True)
    if begun.verification_uri_complete:
        echo(f"  (or open {begun.verification_uri_complete})", err=True)
    deadline = time.monotonic() + timeout
    interval = max(1, begun.interval_seconds)
    while True:
        time.sleep(interval)
        try:
            return stub.CompleteSignIn(signin_pb2.CompleteSignInRequest(
                nonce=begun.nonce, csr_pem=csr_pem, hours=hours), timeout=30)
        except grpc.RpcError as e:
            if reason_of(e) != "signin.pending":
                fail(error_line(e) or "the sign-in failed")
        if time.monotonic() > deadline:
            fail(f"the sign-in was not completed within {int(timeout)} s")


def new_csr() -> tuple[str, bytes]:
    """(CSR PEM, private key PEM) for a fresh P-256 key; the control plane names the subject."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "jitgate login")]))
           .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return csr.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def _ca_pem(ca: str | None, bundle: Path) -> bytes:
    path = Path(ca).expanduser() if ca else Path(os.environ[CA_ENV]).expanduser() if os.environ.get(CA_ENV) \
        else bundle / "ca.pem"
    try:
        return path.read_bytes()
    except OSError:
        fail(f"cannot read the control plane's CA certificate `{path}`: pass --ca PATH or set ${CA_ENV}")


@click.command("login")
@handle_errors
@click.option("--identity", default=None, type=click.Path(file_okay=False),
              help="where to write the identity (default $JITGATE_IDENTITY or ~/.jitgate/identity)")
@click.option("--login-server", default=None,
              help=f"the control plane's sign-in address (default ${LOGIN_SERVER_ENV}, else ${SERVER_ENV}'s port + 1)")
@click.option("--ca", default=None, help=f"the control plane's CA certificate (default ${CA_ENV}, else the identity's)")
@click.option("--headless", is_flag=True, help="sign in on another device (device authorization grant)")
@click.option("--hours", type=click.IntRange(0, 168), default=0, help="certificate lifetime (default: the server's)")
@click.option("--timeout", type=click.FloatRange(5, 3600), default=300.0, show_default=True,
              help="seconds to wait for the sign-in")
def login(identity: str | None, login_server: str | None, ca: str | None, headless: bool, hours: int,
          timeout: float) -> None:
    """Sign in through the organisation's OpenID Connect provider; store a short-lived identity."""
    import grpc

    from ca.x509 import CertBundle, write_identity_bundle
    from jitgate import wire
    from jitgate.v1 import signin_pb2, signin_pb2_grpc

    bundle = identity_dir(identity)
    source, _ = identity_source(bundle)
    if source == "bundle":
        fail(f"`{bundle}` holds an identity issued by an admin; sign in into another directory (--identity DIR)")
    address = login_address(login_server)
    creds = grpc.ssl_channel_credentials(root_certificates=_ca_pem(ca, bundle))
    with grpc.secure_channel(address, creds, options=wire.client_options()) as channel:
        stub = signin_pb2_grpc.SignInServiceStub(channel)
        if not headless:
            try:
                webbrowser.get()
            except webbrowser.Error:
                echo("No browser found here: signing in with a code on another device instead.", err=True)
                headless = True
        try:
            begun = stub.BeginSignIn(signin_pb2.BeginSignInRequest(headless=headless), timeout=30)
        except grpc.RpcError as e:
            fail(f"{error_line(e)} (sign-in server {address})")
        csr_pem, key_pem = new_csr()
        if headless:
            done = _headless(stub, begun, csr_pem, hours, timeout)
        else:
            doc = discover(begun.issuer)
            flow = Flow(begun.issuer, begun.client_id, list(begun.scopes), begun.nonce, begun.max_hours,
                        str(doc.get("authorization_endpoint", "")), str(doc.get("token_endpoint", "")))
            if not flow.token_endpoint or not flow.authorization_endpoint:
                fail("the identity provider's discovery document names no authorization or token endpoint")
            id_token = browser_flow(flow, timeout)
            try:
                done = stub.CompleteSignIn(signin_pb2.CompleteSignInRequest(
                    id_token=id_token, nonce=begun.nonce, csr_pem=csr_pem, hours=hours), timeout=30)
            except grpc.RpcError as e:
                fail(error_line(e) or "the sign-in failed")
    write_identity_bundle(CertBundle(done.cert_pem.encode(), key_pem), done.ca_pem.encode(), bundle)
    expires = done.expires_at.ToDatetime(dt.UTC)
    info = {"source": "oidc", "name": done.name, "issuer": begun.issuer, "login_server": address,
            "signed_in_at": dt.datetime.now(dt.UTC).isoformat(), "expires_at": expires.isoformat()}
    path = bundle / SIGNIN_FILE
    path.write_text(json.dumps(info, indent=2) + "\n")
    path.chmod(0o600)
    echo(f"Signed in as {done.name} (groups: {', '.join(done.groups) or '-'}); identity in {bundle}, "
         f"valid until {expires.strftime('%Y-%m-%d %H:%M UTC')}")


@click.command("logout")
@click.option("--identity", default=None, type=click.Path(file_okay=False),
              help="the identity to remove (default $JITGATE_IDENTITY or ~/.jitgate/identity)")
def logout(identity: str | None) -> None:
    """Remove the identity `jitgate login` stored (never an admin-issued bundle)."""
    bundle = identity_dir(identity)
    source, _ = identity_source(bundle)
    if source == "none":
        echo(f"Not signed in ({bundle} holds no identity).")
        return
    if source != "oidc":
        fail(f"`{bundle}` holds an identity issued by an admin, not a sign-in; remove it by hand if you mean to")
    for name in ("key.pem", "cert.pem", "ca.pem", SIGNIN_FILE):
        (bundle / name).unlink(missing_ok=True)
    echo(f"Signed out: removed the identity in {bundle}")


__all__ = ["identity_source", "login", "login_address", "logout", "new_csr"]
