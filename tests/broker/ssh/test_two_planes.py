"""A broker on one control plane, a revocation on another (both on one PostgreSQL).

OpenSSH client -> jitgate SSH broker (connected to plane A) -> real sshd. The grant is
revoked through plane B; the broker hears it through A's event stream (A follows the audit
log B writes to) and cuts the live session.
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import pytest

from jitgate.v1 import access_pb2
from tests.broker.ssh.harness import SshStack, ended_session
from tests.cluster import ControlPlane
from tests.pgstore import pg_store
from tests.support import require_binary

pytestmark = pytest.mark.timeout(120)


class TwoPlaneStack(SshStack):
    """SshStack whose control plane is plane A on a PostgreSQL store, with plane B beside it."""

    def __init__(self, tmp, url: str) -> None:  # type: ignore[no-untyped-def]
        super().__init__(tmp)
        self.url = url
        self.plane_b: ControlPlane | None = None

    def start(self) -> SshStack:
        from broker.demo_target import free_port
        from controlplane.identity import open_ssh_cas
        from tests.broker.ssh.harness import policy_text

        self.target.start(free_port())
        self.policies.write_text(policy_text(self.target))
        self.cp = ControlPlane(self.tmp / "cp", policies=self.policies, store=self.url, config=self.cp_config)
        self.plane_b = ControlPlane(self.tmp / "cp-b", policies=self.policies, peer=self.cp, config=self.cp_config)
        _, upstream = open_ssh_cas(self.cp.data, self.cp.env["JITGATE_CA_PASSPHRASE"].encode())
        self.upstream_ca_line = upstream.public_key_line()
        self.target.set_trusted_ca([self.upstream_ca_line])
        self.start_broker()
        return self

    def stop(self) -> None:
        super().stop()
        if self.plane_b is not None:
            self.plane_b.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwoPlaneStack]:
    for binary in ("sshd", "ssh", "ssh-keygen"):
        require_binary(binary)
    with pg_store("jg_broker2") as url, TwoPlaneStack(tmp_path_factory.mktemp("ssh-two"), url) as s:
        yield s


def test_revocation_on_the_other_plane_cuts_the_session(stack: TwoPlaneStack) -> None:
    assert stack.plane_b is not None
    grant = stack.grant("bob", "web-02")
    key = stack.user_key("bob", grant.id)
    proc = subprocess.Popen(stack.ssh_argv(key, "web-02", "echo started; sleep 60"), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"started\n"  # relayed through plane A's broker
        stack.plane_b.client("admin").access.Revoke(access_pb2.RevokeRequest(id=grant.id, reason="incident 9"))
        revoked_at = time.monotonic()
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert b"was revoked" in err and b"incident 9" in err, err
    session = ended_session(stack, grant.id)[0]
    assert session.end_reason == "revoked"
    print(f"revoked on plane B, cut by the broker on A: {(time.monotonic() - revoked_at) * 1000:.0f} ms")
