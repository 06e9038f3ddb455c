"""The real OpenID provider for tests and the demo: panva's `oidc-provider` (npm, OpenID certified)
run by `tests/oidc/provider/provider.mjs`, plus the two ways a person drives it over real HTTP.

    with OidcProvider(tmp, accounts=ACCOUNTS) as idp:   # idp.issuer = http://127.0.0.1:PORT
        idp.rotate()                                     # a new signing key first (SIGHUP)
        browser_login(url, "dana", "pw")                 # follows redirects, posts the login form
        device_login(idp.issuer, user_code, "dana", "pw")

The provider signs with keys this module makes (joserfc), so tests can also sign tokens
"as the provider" (expired, wrong audience) that the provider itself would never issue.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from joserfc.jwk import ECKey

HERE = Path(__file__).resolve().parent / "provider"
CLIENT_ID = "jitgate"
NODE_MODULES = HERE / "node_modules" / "oidc-provider"


def test_client(client_id: str = CLIENT_ID) -> dict[str, Any]:
    """A public native client: PKCE, loopback redirect (any port, RFC 8252), device grant."""
    return {
        "client_id": client_id, "token_endpoint_auth_method": "none", "application_type": "native",
        "redirect_uris": ["http://127.0.0.1/callback"], "response_types": ["code"],
        "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
        "require_auth_time": True, "id_token_signed_response_alg": "ES256",  # the keys made here are P-256
    }


def new_key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "alg": "ES256", "use": "sig"})


def missing() -> str | None:
    """Why the provider cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "node is not installed (scripts/setup.sh installs it)"
    if not NODE_MODULES.exists():
        return "oidc-provider is not installed: run scripts/setup.sh (npm ci in tests/oidc/provider)"
    return None


class OidcProvider:
    """One provider process on an ephemeral loopback port."""

    def __init__(self, tmp: Path, accounts: dict[str, dict[str, Any]],
                 clients: list[dict[str, Any]] | None = None, id_token_ttl: int = 600) -> None:
        self.tmp = Path(tmp)
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.config_path = self.tmp / "provider.json"
        self.keys = [new_key("k1")]
        self.config = {"host": "127.0.0.1", "port": 0, "accounts": accounts,
                       "clients": clients or [test_client()], "id_token_ttl": id_token_ttl}
        self._write()
        self.log_path = self.tmp / "provider.log"
        self.issuer = ""
        self.proc: subprocess.Popen[str] | None = None

    def _write(self) -> None:
        cfg = {**self.config, "jwks": {"keys": [k.as_dict(private=True) for k in self.keys]}}
        self.config_path.write_text(json.dumps(cfg))
        self.config_path.chmod(0o600)

    @property
    def signing_key(self) -> ECKey:
        return self.keys[0]

    def start(self) -> OidcProvider:
        why = missing()
        if why:
            raise RuntimeError(why)
        self.proc = subprocess.Popen(["node", str(HERE / "provider.mjs"), str(self.config_path)],
                                     stdout=subprocess.PIPE, stderr=open(self.log_path, "a"), text=True)
        line = self._line()
        self.issuer = json.loads(line)["issuer"]
        return self

    def _line(self) -> str:
        """The provider's next JSON line on stdout (its library may print other lines there)."""
        assert self.proc is not None and self.proc.stdout is not None
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"the OpenID provider stopped:\n{self.log_path.read_text()[-2000:]}")
            if line.startswith("{"):
                return line

    def rotate(self) -> ECKey:
        """A new signing key, published first; the old one stays published (a real rotation)."""
        assert self.proc is not None
        key = new_key(f"k{len(self.keys) + 1}")
        self.keys.insert(0, key)
        self._write()
        self.proc.send_signal(1)  # SIGHUP
        assert json.loads(self._line()).get("rotated")
        return key

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def __enter__(self) -> OidcProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Forms(HTMLParser):
    """The first form's action and its inputs' names and values."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action") or ""
        elif tag in ("input", "button") and a.get("name") and a.get("name") != "abort":  # a person confirms
            self.fields[str(a["name"])] = a.get("value") or ""


def _form(page: httpx.Response) -> tuple[str, dict[str, str]]:
    parser = _Forms()
    parser.feed(page.text)
    assert parser.action is not None, f"no form on {page.url}: {page.text[-1500:]}"
    return urljoin(str(page.url), parser.action), parser.fields


def _sign_in(http: httpx.Client, page: httpx.Response, user: str, password: str, otp: str) -> httpx.Response:
    """Post the provider's login form; consent is automatic (first-party client)."""
    action, fields = _form(page)
    fields.update({"login": user, "password": password, "otp": otp})
    done = http.post(action, data=fields)
    if "wrong user name or password" in done.text:
        raise AssertionError("the provider refused the test credentials")
    return done


def browser_login(url: str, user: str, password: str, otp: str = "") -> httpx.Response:
    """What a person does in the browser: open the authorization URL, sign in; the redirects end at
    the CLI's loopback callback, which this GETs like a browser does."""
    with httpx.Client(follow_redirects=True, timeout=15) as http:
        return _sign_in(http, http.get(url), user, password, otp)


def device_login(verification_uri: str, user_code: str, user: str, password: str, otp: str = "") -> httpx.Response:
    """The device flow's other device: enter the code, confirm, sign in."""
    with httpx.Client(follow_redirects=True, timeout=15) as http:
        page = http.get(verification_uri)
        action, fields = _form(page)
        fields["user_code"] = user_code
        page = http.post(action, data=fields)
        if "Confirm Device" in page.text:
            action, fields = _form(page)
            page = http.post(action, data=fields)
        done = _sign_in(http, page, user, password, otp)
        return done


def wait_for(path: Path, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear")
        time.sleep(0.02)
    return path.read_text().strip()


def browser_script(tmp: Path, python: str, user: str, password: str, otp: str = "") -> Path:
    """An executable for $BROWSER (Python's webbrowser runs it with the URL): signs `user` in."""
    script = Path(tmp) / f"browser-{user}.sh"
    repo = Path(__file__).resolve().parent.parent.parent
    script.write_text(
        "#!/bin/sh\n"
        f'cd "{repo}" && exec "{python}" -c "import sys; from tests.oidc.provider import browser_login; '
        f"browser_login(sys.argv[1], '{user}', '{password}', '{otp}')\" \"$1\"\n")
    script.chmod(0o700)
    return script


__all__ = ["CLIENT_ID", "OidcProvider", "browser_login", "browser_script", "device_login", "missing", "new_key",
           "os", "test_client", "wait_for"]
