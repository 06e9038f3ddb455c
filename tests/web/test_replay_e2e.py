"""Watch and replay in Debian's Chromium: a live OpenSSH session's output appears while it runs,
a finished one replays (the player loads, seek works, the recording verifies), a PostgreSQL
session is a timeline of statements, and someone who may not read a recording sees why.

One stack for the module: the OpenID provider, a control plane with sign-ins on (recordings in
its default directory store), the SSH broker with its demo target (real sshd), the PostgreSQL
broker on the local PostgreSQL, and `jitgate web`. Sessions are made by plain OpenSSH and
psycopg as `alice`; `admin` watches and replays; `bob` (sre, not an auditor) is refused.
"""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from broker.demo_target import free_port
from jitgate.v1 import recordings_pb2, recordings_pb2_grpc
from recorder.events import RecordingError
from tests.broker.ssh.harness import policy_text, sessions_of, wait_for
from tests.cluster import ControlPlane
from tests.oidc.provider import OidcProvider, missing
from tests.oidc.provider import test_client as cli_client
from tests.oidc.provider import wait_for as wait_for_file
from tests.recordings.stack import RecordingStack
from tests.support import require
from tests.web.conftest import ACCOUNTS, Browser, WebStack, start_web, stop, web_client


class ReplayStack(RecordingStack):
    """The recording tests' brokers and target under a control plane that signs people in, plus the console."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(tmp)
        self.idp: OidcProvider | None = None
        self.web: WebStack | None = None

    def start(self) -> ReplayStack:
        import psycopg

        from controlplane.identity import open_ssh_cas
        from tests.broker.pg.harness import LOCAL_PG

        with psycopg.connect(**LOCAL_PG, autocommit=True) as conn:  # type: ignore[arg-type]
            conn.execute(f"create role {self.role} login")
        self.start_target()
        doc = yaml.safe_load(policy_text(self.target))
        doc["resources"]["appdb"] = {"kind": "postgres", "address": "127.0.0.1:5432", "database": "test",
                                     "labels": {"env": "dev"}, "roles": [self.role], "owners": ["group:sre"]}
        self.policies.write_text(yaml.safe_dump(doc, sort_keys=False))
        port = free_port()
        url = f"https://127.0.0.1:{port}"
        self.idp = OidcProvider(self.tmp / "idp", ACCOUNTS, clients=[cli_client(), web_client(url + "/auth/callback")])
        self.idp.start()
        config = {**self.cp_config,  # no duration model (SshStack's): every grant here names its duration
                  "oidc": {"issuer": self.idp.issuer, "client_id": "jitgate", "console_client_id": "jitgate-web",
                           "keep_unmapped_groups": True}}
        self.cp = ControlPlane(self.tmp / "cp", policies=self.policies, admins=("admin",), brokers=("broker",),
                               config=config)
        _, upstream = open_ssh_cas(self.cp.data)
        self.target.set_trusted_ca([upstream.public_key_line()])
        self.start_broker()
        self.start_pg_broker()
        proc, log = start_web(self.cp, wait_for_file(self.cp.data.root / "login.addr"), port, self.tmp)
        self.web = WebStack(self.idp, self.cp, url, proc, log, self.tmp)
        return self

    def stop(self) -> None:
        try:
            if self.web is not None:
                stop(self.web.proc)
            super().stop()
        finally:
            if self.idp is not None:
                self.idp.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplayStack]:
    why = missing()
    require(why is None, why or "")
    s = ReplayStack(tmp_path_factory.mktemp("webreplay"))
    with s:
        yield s


@pytest.fixture(scope="module")
def web_stack(stack: ReplayStack) -> WebStack:
    """The console of this module's stack (the `browser` fixture of tests/web/conftest.py opens it)."""
    assert stack.web is not None
    return stack.web


def recording(stack: ReplayStack, session_id: str) -> recordings_pb2.Recording | None:
    assert stack.cp is not None
    stub = recordings_pb2_grpc.RecordingServiceStub(stack.cp.channel("admin"))
    rows = stub.ListRecordings(recordings_pb2.ListRecordingsRequest(session_id=session_id)).recordings
    return rows[0] if rows else None


def complete(stack: ReplayStack, session_id: str) -> recordings_pb2.Recording:
    return wait_for(lambda: (r if (r := recording(stack, session_id)) is not None and r.complete else None),
                    timeout=60, interval=0.1)


def session_of(stack: ReplayStack, grant_id: str, live: bool = True) -> str:
    """The grant's session id once the broker reported it (live: only while it runs)."""
    return str(wait_for(lambda: next((s.id for s in sessions_of(stack, grant_id) if not (live and s.end_reason)), ""),
                        timeout=20, interval=0.05))


def ssh_tty(stack: ReplayStack, script: str, live: bool = True) -> tuple[subprocess.Popen[bytes], str]:
    """alice's OpenSSH session with a terminal (-tt: a terminal recording) running `script`;
    live=False for a script that may end before the session is first seen."""
    grant = stack.grant("alice", "web-01")
    key = stack.user_key("alice", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-01", script, extra=("-tt",)), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, session_of(stack, grant.id, live)


def terminal_text(browser: Browser, within: str) -> str:
    return "\n".join(e.text for e in browser.find_all(f"{within} .xterm-rows > div"))


def csp_violations(browser: Browser) -> list[str]:
    """What the page's Content-Security-Policy blocked so far (the browser's buffered reports)."""
    return list(browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; const seen = [];"
        "const keep = (rs) => rs.forEach(r => seen.push(`${r.body.effectiveDirective} ${r.body.blockedURL}`));"
        "const o = new ReportingObserver(keep, {types: ['csp-violation'], buffered: true}); o.observe();"
        "setTimeout(() => { keep(o.takeRecords()); o.disconnect(); done(seen); }, 300);"))


def finish(proc: subprocess.Popen[bytes]) -> None:
    try:
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_live_ssh_session_is_watched_in_the_browser(stack: ReplayStack, browser: Browser) -> None:
    go, done = stack.tmp / "live-go", stack.tmp / "live-done"
    proc, sid = ssh_tty(stack, f"echo live-start; while [ ! -e {go} ]; do sleep 0.05; done; echo live-after-go; "
                               f"while [ ! -e {done} ]; do sleep 0.05; done; echo live-end")
    try:
        wait_for(lambda: recording(stack, sid), timeout=30, interval=0.1)
        browser.sign_in("admin")
        browser.open("/sessions/live")
        row = browser.find(f"tr[data-session='{sid}']")
        assert "alice" in row.text and "root@web-01" in row.text
        assert "unknown" not in browser.text(f"tr[data-session='{sid}'] .time-left")  # the admin sees the grant
        browser.shot("live-sessions")
        row.find_element("css selector", "a.watch").click()
        browser.wait_for(lambda: "live-start" in terminal_text(browser, "#live"), timeout=30)
        assert "live-after-go" not in terminal_text(browser, "#live")
        go.write_text("go")  # output that exists only after the page started watching
        browser.wait_for(lambda: "live-after-go" in terminal_text(browser, "#live"), timeout=30)
        browser.shot("live")
        done.write_text("done")
        browser.wait_for(lambda: browser.find("#live").get_attribute("data-state") == "ended", timeout=60)
        assert "the session ended" in browser.text("#live .live-status")
        assert "live-end" in terminal_text(browser, "#live")
    finally:
        finish(proc)


def _seek(browser: Browser, seconds: str) -> None:
    browser.driver.execute_script(
        "const s = document.querySelector('#player input.seek'); s.value = arguments[0];"
        "s.dispatchEvent(new Event('input'));", seconds)


def test_a_finished_session_replays_with_seek_and_verifies(stack: ReplayStack, browser: Browser) -> None:
    from selenium.webdriver.support.ui import Select

    proc, sid = ssh_tty(stack, "echo replay-first; sleep 1; echo 'replay-<b>last</b>'", live=False)
    finish(proc)
    complete(stack, sid)
    browser.sign_in("admin")
    browser.open(f"/recordings/{sid}")
    player = browser.find("#player")
    browser.wait_for(lambda: player.get_attribute("data-state") == "ended", timeout=30)
    assert "replay-<b>last</b>" in terminal_text(browser, "#player")  # terminal text, never markup
    assert "syntax error" not in terminal_text(browser, "#player")
    assert browser.find("#verify").get_attribute("data-status") == "verified"
    # The times of the two lines, from the cast the player read: seek between them, then back to 0.
    first, last = browser.driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch(document.querySelector('#player').dataset.cast).then(r => r.text()).then(text => {"
        "  const ev = text.split('\\n').slice(1).filter(Boolean).map(l => JSON.parse(l));"
        "  done([ev.find(e => e[2].includes('replay-first'))[0], ev.find(e => e[2].includes('last</b>'))[0]]); });")
    _seek(browser, str((first + last) / 2))
    browser.wait_for(lambda: "replay-first" in terminal_text(browser, "#player")
                     and "replay-<b>last</b>" not in terminal_text(browser, "#player"))
    _seek(browser, "0")
    browser.wait_for(lambda: "replay-first" not in terminal_text(browser, "#player"))
    assert player.get_attribute("data-position") == "0.000"
    # Played again from 0 at 16x: the player runs to the end by itself.
    Select(browser.find("#player select.speed")).select_by_value("16")
    browser.click("#player button.play", navigates=False)
    browser.wait_for(lambda: player.get_attribute("data-state") == "ended", timeout=30)
    assert "replay-<b>last</b>" in terminal_text(browser, "#player")
    _seek(browser, "0")
    browser.wait_for(lambda: "replay-<b>last</b>" not in terminal_text(browser, "#player"))
    _seek(browser, player.get_attribute("data-duration"))
    browser.wait_for(lambda: "replay-<b>last</b>" in terminal_text(browser, "#player"))
    browser.shot("replay")
    # Under the console's CSP nothing but xterm.js's own <style> elements is blocked (their rules
    # reach the page through web/static/js/term.js); no script ever is.
    blocked = csp_violations(browser)
    assert blocked and set(blocked) == {"style-src-elem inline"}, blocked


def test_a_postgresql_session_is_a_timeline_of_statements(stack: ReplayStack, browser: Browser) -> None:
    import psycopg

    grant = stack.pg_grant("alice")
    with psycopg.connect(**stack.pg_dsn("alice", grant.id)) as conn:
        conn.execute("select generate_series(1, 3) as n").fetchall()
        conn.execute("select %s::text as note", ["<script>alert(1)</script>"]).fetchall()
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("select * from no_such_table_for_the_console")
    sid = wait_for(lambda: next((s.id for s in sessions_of(stack, grant.id) if s.end_reason), ""), timeout=30)
    complete(stack, sid)
    browser.sign_in("admin")
    browser.open(f"/recordings/{sid}")
    table = browser.text("#timeline")
    assert "select generate_series(1, 3) as n" in table and "3 rows" in table
    assert "<script>alert(1)</script>" in table  # a parameter shown as text
    failed = [r.text for r in browser.find_all("#timeline tr.failed")]
    assert len(failed) == 1 and "no_such_table_for_the_console" in failed[0] and "42P01" in failed[0]
    assert "1 error" in browser.text("#sql-summary").replace("\n", " ")
    assert browser.find("#verify").get_attribute("data-status") == "verified"
    browser.shot("sql-timeline")


def test_someone_who_may_not_read_a_recording_is_told_so(stack: ReplayStack, browser: Browser) -> None:
    proc, sid = ssh_tty(stack, "echo for-alice-and-auditors-only", live=False)  # it ends at once
    finish(proc)
    complete(stack, sid)
    browser.sign_in("bob")
    for path in (f"/recordings/{sid}", f"/sessions/live/{sid}"):
        browser.open(path)
        message = browser.text("#refusal")
        assert "recording.not_found" in message and f"no recording `{sid}` that `bob` may read" in message, message
        assert "for-alice-and-auditors-only" not in browser.text()
    browser.shot("replay-refused")
    cast = browser.driver.execute_script("return fetch(arguments[0]).then(r => r.status)", f"/recordings/{sid}/cast")
    assert cast == 404, cast
    browser.open("/recordings")
    assert sid not in browser.text()




def test_a_live_watch_ends_when_the_viewers_certificate_does(stack: ReplayStack) -> None:
    """The watch's gRPC call carries the viewer's certificate end as its deadline (no browser needed)."""
    import datetime as dt

    from web.replay import source
    from web.replay.live import live_messages
    from web.session import Person
    from web.signin import rpc_text

    done = stack.tmp / "cert-done"
    proc, sid = ssh_tty(stack, f"echo cert-start; while [ ! -e {done} ]; do sleep 0.05; done")
    try:
        wait_for(lambda: recording(stack, sid), timeout=30, interval=0.1)
        assert stack.cp is not None
        ends = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=4)
        viewer = Person("admin", ["admins"], stack.cp.channel("admin"), ends)
        messages = b"".join(live_messages(source.watch(viewer, sid), rpc_text)).decode()
        assert "cert-start" in messages  # it watched the session while the certificate was good
        assert messages.endswith('event: end\ndata: {"why": "your sign-in ended: sign in again to keep watching"}\n\n')
        gone = Person("admin", ["admins"], stack.cp.channel("admin"), dt.datetime.now(dt.UTC))
        with pytest.raises(RecordingError, match="your sign-in has ended"):
            source.watch(gone, sid)
    finally:
        done.write_text("done")
        finish(proc)
