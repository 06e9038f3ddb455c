"""What every relayed SSH channel shares (`broker.ssh.channel`): end reasons, the recording's cut, no cycle."""
from __future__ import annotations

import ast
from pathlib import Path

from broker.ssh.channel import (
    CLIENT_EXIT,
    RECORDING_FAILED,
    RECORDING_LIMIT,
    SealedRecording,
    end_reason_after_seal,
    recording_cut,
)
from recorder import RecordingError, RecordingLimitError

REPO = Path(__file__).resolve().parents[3]


def test_a_session_whose_recording_could_not_be_sealed_did_not_end_cleanly() -> None:
    unsealed = SealedRecording("ref", "hash", sealed=False)
    assert end_reason_after_seal(CLIENT_EXIT, unsealed) == RECORDING_FAILED
    assert end_reason_after_seal("expired", unsealed) == "expired"  # a cut keeps its own reason
    assert end_reason_after_seal(CLIENT_EXIT, SealedRecording("ref", "hash", sealed=True)) == CLIENT_EXIT
    assert end_reason_after_seal(CLIENT_EXIT, SealedRecording("", "", sealed=False)) == CLIENT_EXIT  # none made


def test_a_stopped_recording_cuts_with_its_reason() -> None:
    limit = recording_cut(RecordingLimitError("over the bound", 1024 * 1024))
    assert limit.reason == RECORDING_LIMIT and "recording limit of 1 MiB" in limit.message
    failed = recording_cut(RecordingError("boom"))
    assert failed.reason == RECORDING_FAILED and "can no longer record this session" in failed.message


def test_the_channels_do_not_import_the_server() -> None:
    # relay and forward reach the broker through `RelayHost`: no server <-> relay <-> forward cycle.
    for name in ("channel", "relay", "forward"):
        tree = ast.parse((REPO / "broker" / "ssh" / f"{name}.py").read_text())
        imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert "broker.ssh.server" not in imported, name
        if name != "relay":
            assert "broker.ssh.relay" not in imported, name  # forward shares channel.py, not relay.py
