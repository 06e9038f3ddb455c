"""The demo's local OpenID provider: `jitgate login` and the web console sign people in through it.

The provider is the one the tests run (panva's `oidc-provider` from npm, installed by
scripts/setup.sh into tests/oidc/provider): people alice, bob, sam and admin with passwords
`<name>-demo` and the one-time code 123456 (sign-ins with it carry `amr: mfa`), and their
groups from policies.yaml, so approvals work as with the demo's bundles. It knows two
clients: the CLI's (`jitgate`, a native app: loopback redirect, device grant) and the web
console's (`jitgate-web`, a web application redirecting to the console's /auth/callback).
"""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import click

PROVIDER_DIR = Path(__file__).resolve().parent.parent / "tests" / "oidc" / "provider"
PEOPLE = {"alice": ["sre", "oncall"], "bob": ["managers"], "sam": ["security"], "admin": ["admins"]}
OTP = "123456"
CONSOLE_CLIENT_ID = "jitgate-web"


def installed() -> bool:
    return shutil.which("node") is not None and (PROVIDER_DIR / "node_modules" / "oidc-provider").exists()


def start_provider(data: Path, log: Path, console_url: str) -> tuple[subprocess.Popen[str], str]:
    """Start the provider on an ephemeral loopback port; (process, issuer)."""
    if not installed():
        raise click.ClickException("the local OpenID provider is not installed: run scripts/setup.sh (node, npm ci)")
    config = data / "oidc-provider.json"
    accounts = {name: {"password": f"{name}-demo", "email": f"{name}@example.com", "email_verified": True,
                       "groups": groups, "otp": OTP} for name, groups in PEOPLE.items()}
    cli_client = {"client_id": "jitgate", "token_endpoint_auth_method": "none", "application_type": "native",
                  "redirect_uris": ["http://127.0.0.1/callback"], "response_types": ["code"],
                  "grant_types": ["authorization_code", "urn:ietf:params:oauth:grant-type:device_code"],
                  "require_auth_time": True, "id_token_signed_response_alg": "ES256"}
    console_client = {"client_id": CONSOLE_CLIENT_ID, "token_endpoint_auth_method": "none",
                      "application_type": "web", "redirect_uris": [console_url + "/auth/callback"],
                      "response_types": ["code"], "grant_types": ["authorization_code"],
                      "require_auth_time": True, "id_token_signed_response_alg": "ES256"}
    config.write_text(json.dumps({"host": "127.0.0.1", "port": 0, "accounts": accounts,
                                  "clients": [cli_client, console_client]}))
    config.chmod(0o600)
    proc = subprocess.Popen(["node", str(PROVIDER_DIR / "provider.mjs"), str(config)], stdout=subprocess.PIPE,
                            stderr=log.open("ab"), text=True, start_new_session=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("{"):
            return proc, str(json.loads(line)["issuer"])
    raise click.ClickException(f"the local OpenID provider did not start; see {log}")


def server_settings(issuer: str, login_port: int) -> dict[str, Any]:
    """What server.yaml gets for sign-ins through the local provider (the CLI and the console)."""
    return {"login_listen": f"127.0.0.1:{login_port}",
            "oidc": {"issuer": issuer, "client_id": "jitgate", "console_client_id": CONSOLE_CLIENT_ID,
                     "keep_unmapped_groups": True}}


def instructions(jg: str, login_port: int, ca: Path, identities: Path) -> str:
    return f"""
Sign in through the local OpenID provider (people alice, bob, sam, admin; password NAME-demo; one-time code {OTP}):
  export JITGATE_LOGIN_SERVER=127.0.0.1:{login_port} JITGATE_CA={ca}
  JITGATE_IDENTITY={identities / 'alice-oidc'} {jg} login --headless    # or without --headless where a browser opens
  JITGATE_IDENTITY={identities / 'alice-oidc'} {jg} whoami              # source: oidc, valid 8 h"""


__all__ = ["CONSOLE_CLIENT_ID", "PEOPLE", "installed", "instructions", "server_settings", "start_provider"]
