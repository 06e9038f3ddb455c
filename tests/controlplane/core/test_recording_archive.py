"""The control plane's recording archive on a real SQLite store and a directory store: uploads at
the store's offsets, who may read, legal hold and retention (a clock moved by hand)."""
from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path

import pytest

from controlplane.errors import JitError
from controlplane.model import SessionRecord
from controlplane.recordings import RecordingArchive
from recorder import FileRecordingStore, Kind
from recorder.objectstore import DirObjectStore


def _session(core, clock, sid: str, user: str = "alice", broker: str = "broker-1") -> None:
    with core.ledger.write() as w:
        w.tx.insert_session(SessionRecord(id=sid, grant_id="g-" + sid, user=user, resource="web-01", kind="ssh",
                                          login="root", role="", broker=broker, client_address="127.0.0.1:1",
                                          started_at=clock()))


def _recording(tmp: Path, sid: str) -> tuple[bytes, bytes, dict]:
    store = FileRecordingStore(tmp / "broker", passphrase=b"pw")

    async def write() -> None:
        w = store.create(sid, Kind.TERMINAL, {"user": "alice"})
        w.write_output(b"hello archive\r\n")
        await w.close()

    asyncio.run(write())
    d = tmp / "broker" / "recordings" / sid
    return (d / "session.cast").read_bytes(), (d / "chain").read_bytes(), json.loads((d / "meta.json").read_text())


@pytest.fixture
def archive(core, tmp_path: Path) -> RecordingArchive:
    return RecordingArchive(core.ledger, DirObjectStore(tmp_path / "store"), auditors_group="security",
                            retention_days=30)


def _upload(archive: RecordingArchive, sid: str, data: bytes, chain: bytes, meta: dict) -> None:
    kw = dict(ref=sid, session_id=sid, kind="terminal", metadata_json="{}", started_at=meta["started_at"])
    half = len(data) // 2
    r = archive.append("broker-1", **kw, data_offset=0, data=data[:half], chain_offset=0, chain_bytes=b"",
                       final=False)
    assert (r.data_offset, r.complete) == (half, False)
    # A resend from a stale offset stores nothing and says where the store is.
    r = archive.append("broker-1", **kw, data_offset=0, data=data, chain_offset=0, chain_bytes=chain, final=True)
    assert (r.data_offset, r.chain_offset, r.complete) == (half, 0, False)
    r = archive.append("broker-1", **kw, data_offset=half, data=data[half:], chain_offset=0, chain_bytes=chain,
                       final=True)
    assert r.complete


def test_upload_read_authorize_hold_and_retention(core, clock, archive, tmp_path: Path) -> None:
    data, chain, meta = _recording(tmp_path, "s1")
    _session(core, clock, "s1")
    _upload(archive, "s1", data, chain, meta)
    row = archive.current("s1")
    assert row.sealed and row.complete and row.data_bytes == len(data) and row.chain_bytes == len(chain)
    assert row.sha256 == hashlib.sha256(data).hexdigest() and row.user == "alice"
    assert b"".join(archive.chunks(row, "data", size=7)) == data

    # Readers: the owner, an auditor (group `security`), an admin; not another user.
    for who in ("alice", "sam", "ada"):
        assert archive.open_for(who, "s1", "replay").ref == "s1"
    with pytest.raises(JitError) as refused:
        archive.open_for("dave", "s1", "replay")
    assert refused.value.code == "recording.not_found"
    assert [r.ref for r in archive.list("dave")] == []
    assert [r.ref for r in archive.list("sam")] == ["s1"]
    with pytest.raises(JitError, match="may not list"):
        archive.list("dave", user="alice")
    # Another broker may not write to it.
    with pytest.raises(JitError):
        archive.append("broker-2", ref="s1", session_id="s1", kind="terminal", metadata_json="{}", started_at=0,
                       data_offset=len(data), data=b"x", chain_offset=len(chain), chain_bytes=b"", final=False)

    # Legal hold: admins only; a held recording outlives retention, a released one does not.
    with pytest.raises(JitError):
        archive.hold("alice", "s1", release=False, reason="mine")
    assert archive.hold("ada", "s1", release=False, reason="case 7") == ["s1"]
    clock.advance(days=31)
    assert archive.sweep_retention() == 0
    assert archive.current("s1").hold
    archive.hold("ada", "s1", release=True, reason="case closed")
    assert archive.sweep_retention() == 1
    with pytest.raises(JitError):
        archive.current("s1")
    assert not (tmp_path / "store" / "s1").exists()
    types = [e.type for e in core.audit.audit_events(after_seq=0, limit=1000)]
    for t in ("recording.stored", "recording.read", "recording.refused", "recording.held",
              "recording.hold_released", "recording.deleted"):
        assert t in types, t


def test_seal_keys_are_published_by_brokers_and_kept_after_rotation(core, archive, tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    def line() -> str:
        return Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()

    old, new = line(), line()
    kid_old, fresh = archive.publish_key("broker-1", old)
    assert fresh and archive.publish_key("broker-1", old) == (kid_old, False)
    kid_new, _ = archive.publish_key("broker-1", new)  # rotation: both stay trusted
    assert {k["key_id"] for k in archive.seal_keys()} == {kid_old, kid_new}
    with pytest.raises(JitError):
        archive.publish_key("alice", line())  # only brokers publish
    with pytest.raises(JitError):
        archive.publish_key("broker-1", "ssh-rsa AAAA not-a-key")
