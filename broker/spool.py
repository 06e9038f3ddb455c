"""Session-end reports kept on disk until the control plane has them (both brokers).

A report is written to `<data>/pending-ends/<session>.json` before it is sent
and removed once the control plane acknowledged it, so neither an unreachable
control plane nor a broker restart loses a session's end. After a crash,
`crashed_sessions` finds recordings this broker left unsealed (the session
never ended cleanly): they are reported ended with reason `error` and the
hash of their last intact line, once (a marker in `<data>/recovered/`).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from broker.cpclient import ControlPlaneError
from recorder import FileRecordingStore, RecordingError

log = logging.getLogger(__name__)


class EndReceiver(Protocol):
    """The control plane call a report goes to (`broker.cpclient.ControlPlaneClient`)."""

    async def report_session_end(self, session_id: str, reason: str, *, bytes_in: int = 0,
                                 bytes_out: int = 0, recording_ref: str = "", recording_hash: str = "",
                                 ended_at: dt.datetime | None = None,
                                 last_activity_at: dt.datetime | None = None) -> None: ...


@dataclass(frozen=True)
class EndReport:
    """What ReportSessionEnd carries. Times are ISO 8601 UTC strings ("" when unknown)."""

    session_id: str
    reason: str
    bytes_in: int
    bytes_out: int
    recording_ref: str
    recording_hash: str
    ended_at: str
    last_activity_at: str = ""

    def ended(self) -> dt.datetime:
        return dt.datetime.fromisoformat(self.ended_at)

    def last_activity(self) -> dt.datetime | None:
        return dt.datetime.fromisoformat(self.last_activity_at) if self.last_activity_at else None


class EndReportSpool:
    """Pending session-end reports, one small file each."""

    def __init__(self, data_dir: Path) -> None:
        self.pending_dir = Path(data_dir) / "pending-ends"
        self.recovered_dir = Path(data_dir) / "recovered"
        for d in (self.pending_dir, self.recovered_dir):
            d.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _path(self, session_id: str) -> Path:
        return self.pending_dir / f"{session_id}.json"

    def put(self, report: EndReport) -> None:
        path = self._path(report.session_id)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(report)))
        os.replace(tmp, path)

    def done(self, session_id: str) -> None:
        self._path(session_id).unlink(missing_ok=True)

    async def send(self, cp: EndReceiver, report: EndReport) -> bool:
        """ReportSessionEnd once. True when it is settled and left the spool (acknowledged, or
        refused for good); False when the control plane is unreachable (kept for a retry)."""
        try:
            await cp.report_session_end(
                report.session_id, report.reason, bytes_in=report.bytes_in, bytes_out=report.bytes_out,
                recording_ref=report.recording_ref, recording_hash=report.recording_hash,
                ended_at=report.ended(), last_activity_at=report.last_activity())
        except ControlPlaneError as exc:
            if exc.unavailable:
                return False
            log.error("session end of %s refused by the control plane: %s", report.session_id, exc)
        self.done(report.session_id)
        return True

    def pending(self) -> list[EndReport]:
        out = []
        for path in sorted(self.pending_dir.glob("*.json")):
            try:
                out.append(EndReport(**json.loads(path.read_text())))
            except (OSError, ValueError, TypeError):
                continue  # a torn write of a report that was then re-sent; nothing to do
        return out

    def crashed_sessions(self, store: FileRecordingStore, broker_name: str, live: set[str]) -> list[EndReport]:
        """Reports for recordings this broker left unsealed (not live now, not yet recovered)."""
        now = dt.datetime.now(dt.UTC).isoformat()
        pending = {r.session_id for r in self.pending()}
        out = []
        for info in store.list():
            if (info.sealed or info.metadata.get("broker") != broker_name or info.session_id in live
                    or info.session_id in pending or (self.recovered_dir / info.ref).exists()):
                continue
            try:
                result = store.verify(info.ref)
            except RecordingError:
                continue
            report = EndReport(session_id=info.session_id, reason="error", bytes_in=0, bytes_out=0,
                               recording_ref=info.ref, recording_hash=result.final_hash or "", ended_at=now)
            self.put(report)
            (self.recovered_dir / info.ref).touch()
            out.append(report)
        return out
