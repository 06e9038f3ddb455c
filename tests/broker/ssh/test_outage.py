"""The broker without its control plane: live sessions still end at their deadline, new ones are refused
with a plain message, and after the control plane is back the broker re-syncs and serves again."""
from __future__ import annotations

import subprocess
import sys

import pytest

from jitgate.v1 import access_pb2
from tests.broker.ssh.harness import SshStack, wait_for
from tests.support import require_binary

pytestmark = pytest.mark.timeout(120)


def test_deadline_holds_and_new_sessions_are_refused_while_control_plane_is_down(tmp_path) -> None:
    for binary in ("sshd", "ssh", "ssh-keygen"):
        require_binary(binary)
    with SshStack(tmp_path) as stack:
        assert stack.cp is not None
        # An identity without the broker role cannot run a broker: refused at start, one line.
        # (It starts while bob's grant is made; its answer is read before the control plane goes.)
        not_a_broker = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "ssh-broker", "--listen", "127.0.0.1:0",
             "--identity", str(stack.cp.identity("alice")), "--server", stack.cp.address,
             "--data-dir", str(tmp_path / "not-a-broker")], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        other = stack.grant("bob", "web-02")
        other_key = stack.user_key("bob", other.id)
        _, err = not_a_broker.communicate(timeout=60)
        assert not_a_broker.returncode == 1 and b"refuses this broker (alice)" in err and b"Traceback" not in err

        short = stack.grant("alice", "web-01", seconds=5)
        short_key = stack.user_key("alice", short.id)
        live = subprocess.Popen(stack.ssh_argv(short_key, "web-01", "echo started; sleep 60"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert live.stdout is not None
        assert live.stdout.readline() == b"started\n"  # relaying from the target

        stack.cp.kill()
        # A new session is refused while alice's runs on to its deadline (the two wait side by side).
        refused = subprocess.Popen(stack.ssh_argv(other_key, "web-02", "echo should-not-run"),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = live.communicate(timeout=30)
        assert live.returncode != 0
        assert b"expired at" in err, err  # the broker's own timer, no control plane

        out, err = refused.communicate(timeout=30)
        assert refused.returncode != 0 and b"should-not-run" not in out
        assert b"control plane is unreachable" in err, err

        stack.cp.start()
        admin = stack.client("admin")
        wait_for(lambda: (res := stack.ssh(other_key, "web-02", "echo back")).returncode == 0 and res,
                 timeout=30, interval=0.3)
        # The cut made during the outage reaches the control plane once it is back.
        ended = wait_for(lambda: [s for s in admin.access.ListSessions(access_pb2.ListSessionsRequest(
            grant_id=short.id)).sessions if s.end_reason], timeout=40, interval=0.5)
        assert ended[0].end_reason == "expired" and ended[0].recording_ref

        # Broker shutdown: live sessions are cut with a line saying why, and reported.
        live = subprocess.Popen(stack.ssh_argv(other_key, "web-02", "echo started; sleep 60"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert live.stdout is not None and live.stdout.readline() == b"started\n"
        assert stack.stop_broker() == 0
        _, err = live.communicate(timeout=30)
        assert live.returncode != 0 and b"broker is shutting down" in err, err
        ended = wait_for(lambda: [s for s in admin.access.ListSessions(access_pb2.ListSessionsRequest(
            grant_id=other.id)).sessions if s.end_reason == "broker_shutdown"], timeout=10)
        assert ended[0].recording_ref

        # Broker crash (kill -9) mid-session: the restarted broker reports the session ended
        # (reason error) with the recording as far as it got, intact but unsealed.
        stack.start_broker()
        live = subprocess.Popen(stack.ssh_argv(other_key, "web-02", "echo crash-me; sleep 60"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert live.stdout is not None and live.stdout.readline() == b"crash-me\n"
        assert stack.broker_proc is not None
        stack.broker_proc.kill()
        stack.broker_proc.wait()
        live.communicate(timeout=30)
        before = {s.id for s in admin.access.ListSessions(access_pb2.ListSessionsRequest(
            grant_id=other.id)).sessions if s.end_reason}
        stack.start_broker()
        crashed = wait_for(lambda: [s for s in admin.access.ListSessions(access_pb2.ListSessionsRequest(
            grant_id=other.id)).sessions if s.end_reason and s.id not in before], timeout=15)
        assert crashed[0].end_reason == "error" and crashed[0].recording_ref
        from recorder import FileRecordingStore

        result = FileRecordingStore(stack.broker_dir).verify(crashed[0].recording_ref)
        assert result.intact and not result.sealed
        assert result.final_hash == crashed[0].recording_hash
