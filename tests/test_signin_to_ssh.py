"""Issue 17's "Done when", end to end through the README's commands and real components only:
the local OpenID provider (oidc-provider, npm), a `jitgate server` with `oidc:` and `notify:`
(email to an aiosmtpd server requiring STARTTLS and AUTH; a signed webhook to an HTTP receiver),
the SSH broker and a real sshd behind it.

People: `rita` asks and `olga` approves; neither is in policies.yaml's `users:`, their groups
come from the provider (`idp-sre` -> `sre`). `sam` is in `users:` (email in `attributes`) and
holds an admin-issued bundle, not a sign-in. The prod rule wants `group:sre` to approve, with a
sign-in within 10 minutes (`step_up`). So olga's address reaches the mail only through her own
sign-in (the people table's verified email), sam's only through policies.yaml, and rita's
approval mail only through her sign-in.

One stack for the module; the steps run in order in one test (each needs the one before).
"""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.broker.ssh.harness import SshStack, policy_text
from tests.cluster import REPO, ControlPlane
from tests.notify.receivers import HttpReceiver, SmtpServer
from tests.oidc.provider import CLIENT_ID, OidcProvider, browser_script, missing, wait_for
from tests.support import require, require_binary

pytestmark = pytest.mark.timeout(120)

ACCOUNTS: dict[str, dict[str, Any]] = {
    "rita": {"password": "rita-pw", "email": "rita@example.com", "email_verified": True, "groups": ["idp-sre"]},
    "olga": {"password": "olga-pw", "email": "olga@example.com", "email_verified": True, "groups": ["idp-sre"]},
}
PROD_RULE = {"name": "prod-sre", "when": 'resource.labels.env == "prod"', "max_duration": "2h",
             "approval": {"levels": [{"approvers": ["group:sre"]}]},
             "step_up": {"for": ["approve"], "max_age": "10m"}}


class DoneWhenStack(SshStack):
    """SshStack whose control plane signs people in through `idp` and notifies approvers."""

    def __init__(self, tmp: Path, idp: OidcProvider) -> None:
        super().__init__(tmp)
        self.idp = idp
        self.smtp = SmtpServer(self.tmp).start()
        self.hooks = HttpReceiver().start()
        self.login_addr = ""

    def start(self) -> DoneWhenStack:
        from controlplane.identity import open_ssh_cas

        self.start_target()
        doc = yaml.safe_load(policy_text(self.target))
        doc["users"] = {"admin": {"groups": ["admins"]},
                        "sam": {"groups": ["sre"], "attributes": {"email": "sam@example.test"}}}
        doc["resources"]["prod-01"] = {**doc["resources"]["web-01"], "labels": {"env": "prod"}}
        doc["rules"].insert(0, PROD_RULE)
        self.policies.write_text(yaml.safe_dump(doc, sort_keys=False))
        notify = {
            "channels": {
                "mail": {"type": "email", "host": "127.0.0.1", "port": self.smtp.port, "from": "jitgate@example.test",
                         "username": self.smtp.user, "password": "env:T_SMTP_PASSWORD",
                         "ca_file": str(self.smtp.cert)},
                "hooks": {"type": "webhook", "url": "env:T_HOOK_URL", "secret": "env:T_HOOK_KEY"},
            },
            "approvers": ["mail", "hooks"], "requester": ["mail"], "poll_seconds": 0.2,
        }
        config = {"oidc": {"issuer": self.idp.issuer, "client_id": CLIENT_ID, "group_map": {"idp-sre": "sre"}},
                  "notify": notify, "recommender": False}  # no duration model: it takes seconds to load
        env = {"T_SMTP_PASSWORD": self.smtp.password, "T_HOOK_URL": self.hooks.url, "T_HOOK_KEY": self.hooks.secret}
        self.cp = ControlPlane(self.tmp / "cp", policies=self.policies, admins=("admin",), brokers=("broker",),
                               config=config, env=env)
        _, upstream = open_ssh_cas(self.cp.data)
        self.target.set_trusted_ca([upstream.public_key_line()])
        self.start_broker()
        (self.tmp / "ca.pem").write_bytes(self.cp.ca_pem)  # what an admin hands people with the login address
        self.login_addr = wait_for(self.cp.data.root / "login.addr")
        return self

    def stop(self) -> None:
        super().stop()
        self.smtp.stop()
        self.hooks.stop()

    def person_env(self, name: str) -> dict[str, str]:
        """The README's environment for a person who signs in (no admin-issued bundle)."""
        assert self.cp is not None
        browser = browser_script(self.tmp, sys.executable, name, str(ACCOUNTS[name]["password"]))
        return {**self.cp.env, "JITGATE_SERVER": self.cp.address, "JITGATE_IDENTITY": str(self.tmp / "ids" / name),
                "JITGATE_LOGIN_SERVER": self.login_addr, "JITGATE_CA": str(self.tmp / "ca.pem"),
                "BROWSER": str(browser), "JITGATE_SSH_DIR": str(self.tmp / "ssh" / name)}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DoneWhenStack]:
    why = missing()
    require(why is None, why or "")
    for binary in ("sshd", "ssh", "ssh-keygen"):
        require_binary(binary)
    tmp = tmp_path_factory.mktemp("done-when")
    with OidcProvider(tmp / "idp", ACCOUNTS) as idp:
        s = DoneWhenStack(tmp / "stack", idp)
        try:
            yield s.start()
        finally:
            s.stop()


def jitgate(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def login(stack: DoneWhenStack, name: str) -> dict[str, str]:
    env = stack.person_env(name)
    assert f"Signed in as {name} (groups: sre)" in ok(jitgate("login", env=env))
    return env


def test_sign_in_ask_notify_approve_after_sign_in_and_ssh(stack: DoneWhenStack) -> None:
    # Olga signed in once before (so the control plane has her verified email), then logged out.
    olga = login(stack, "olga")
    ok(jitgate("logout", env=olga))

    # 1-2. Rita, unknown to policies.yaml, signs in and asks for the prod target.
    rita = login(stack, "rita")
    assert json.loads(ok(jitgate("whoami", "--output", "json", env=rita)))["source"] == "oidc"
    asked = json.loads(ok(jitgate("request", "prod-01", "--login", "root", "--duration", "30m",
                                  "--reason", "rotate the host keys", "--output", "json", env=rita)))
    rid = asked["request"]["id"]
    assert asked["request"]["state"] == "REQUEST_STATE_PENDING"

    # 3. The approvers are told: one email (olga's address from her sign-in, sam's from
    # policies.yaml; never the requester) and one signed webhook call, both naming the request.
    mails = stack.smtp.wait(lambda ms: any(m.message["X-Jitgate-Request"] == rid for m in ms))
    mail = next(m for m in mails if m.message["X-Jitgate-Request"] == rid)
    assert sorted(mail.recipients) == ["olga@example.com", "sam@example.test"]
    assert mail.tls and mail.authenticated
    assert f"jitgate approve {rid}" in mail.message.get_content()
    hits = stack.hooks.wait(lambda hs: any(h.json()["request"]["id"] == rid for h in hs))
    hook = next(h.json() for h in hits if h.json()["request"]["id"] == rid)
    assert hook["kind"] == "waiting" and hook["recipients"] == ["olga", "sam"]
    assert hook["command"].startswith(f"jitgate approve {rid}") and stack.hooks.bad_signatures == 0

    # Refusals on the way: no grant yet, so no ssh; nobody approves their own request; sam may
    # approve by group but holds no sign-in, which the rule's step-up demands.
    early = jitgate("ssh", "prod-01", "--broker", f"127.0.0.1:{stack.broker_port}", "--broker-host-key",
                    stack.broker_host_key, "--", "echo", "too-early", env=rita)
    assert early.returncode != 0 and "no active grant for `prod-01`" in early.stderr, early.stderr
    own = jitgate("approve", rid, env=rita)
    assert own.returncode != 0 and "own request" in own.stderr, own.stderr
    assert stack.cp is not None
    sam = jitgate("approve", rid, env=stack.cp.cli_env("sam"))
    assert sam.returncode != 0 and "requires a sign-in through the identity provider" in sam.stderr, sam.stderr

    # 4. Olga signs in and approves.
    olga = login(stack, "olga")
    ok(jitgate("approve", rid, env=olga))
    # The requester is told, at the address of her own sign-in.
    stack.smtp.wait(lambda ms: any(m.message["X-Jitgate-Request"] == rid and "approved" in m.message["Subject"]
                                   for m in ms))
    told = [m for m in stack.smtp.for_request(rid) if "approved" in m.message["Subject"]]
    assert [m.recipients for m in told] == [["rita@example.com"]]

    # 5. Rita's `jitgate ssh` runs a command on the target through the broker.
    done = jitgate("ssh", "prod-01", "--broker", f"127.0.0.1:{stack.broker_port}", "--broker-host-key",
                   stack.broker_host_key, "--", "echo", "hello-from-$((6*7))", env=rita)
    assert ok(done).strip() == "hello-from-42", done.stderr
