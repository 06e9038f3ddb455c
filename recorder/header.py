"""The first line of a recording: who, what, when (and, for terminals, the asciicast v2 header)."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from recorder.events import Kind


@dataclass(slots=True)
class RecordingHeader:
    """What is known when a recording starts. Chained as the recording's first line."""

    ref: str
    session_id: str
    kind: Kind
    started_at: float  # unix time
    metadata: dict[str, Any] = field(default_factory=dict)
    width: int = 80  # terminal only
    height: int = 24  # terminal only
    command: str | None = None  # exec, or a terminal started with a command
    title: str | None = None
    env: dict[str, str] = field(default_factory=dict)  # terminal: TERM, SHELL

    def jitgate_block(self) -> dict[str, Any]:
        return {"format": 1, "ref": self.ref, "session_id": self.session_id,
                "kind": self.kind.value, "started_at": self.started_at, "metadata": self.metadata}

    def to_line(self) -> str:
        """The header line: asciicast v2 for terminals, a JSON object otherwise."""
        if self.kind is Kind.TERMINAL:
            head: dict[str, Any] = {"version": 2, "width": self.width, "height": self.height,
                                    "timestamp": int(self.started_at), "env": self.env}
            if self.title is not None:
                head["title"] = self.title
            if self.command is not None:
                head["command"] = self.command
            # asciinema ignores keys it does not know; ours ride along in one block.
            head["jitgate"] = self.jitgate_block()
        else:
            head = {"jitgate": self.jitgate_block()}
            if self.command is not None:
                head["command"] = self.command
            if self.title is not None:
                head["title"] = self.title
        return json.dumps(head, ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_line(cls, line: str | bytes) -> RecordingHeader:
        """Parse a header line (ValueError when it is not one of ours)."""
        try:
            head = json.loads(line)
            block = head["jitgate"]
            kind = Kind(block["kind"])
            if kind is Kind.TERMINAL and head.get("version") != 2:
                raise ValueError("terminal header is not asciicast v2")
            return cls(
                ref=str(block["ref"]), session_id=str(block["session_id"]), kind=kind,
                started_at=float(block["started_at"]), metadata=dict(block.get("metadata") or {}),
                width=int(head.get("width", 80)), height=int(head.get("height", 24)),
                command=head.get("command"), title=head.get("title"), env=dict(head.get("env") or {}),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"not a jitgate recording header: {exc}") from None
