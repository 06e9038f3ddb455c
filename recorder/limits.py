"""The bound on the bytes one recording may write, shared by every broker.

A session's recording grows with what the session moves: a terminal with what
it shows, an exec session or a port forward with every byte each way (base64,
4/3). Without a bound, one user could fill the recordings disk and stop every
other session from being recorded (so from running). `RecordingWriter(max_bytes=...)`
(or `FileRecordingStore(max_recording_bytes=...)`) refuses the event that would
pass the bound with `RecordingLimitError`, writes a note saying so, and takes
nothing more but its seal; a broker records before it relays, so it cuts the
session there with nothing unrecorded.
"""
from __future__ import annotations

import re

# 1 GiB: far above what people produce in terminals and commands (terminal recordings
# are kilobytes to a few megabytes an hour), still about 750 MB of payload through an
# exec session or a port forward (base64 plus the chain), and small next to a
# recordings disk, so one session cannot fill it. Brokers take it as an option.
DEFAULT_MAX_RECORDING_BYTES = 1 << 30
# 64 KiB: the header, the limit's note and the seal fit with room to spare; below it a
# session could be cut before it showed anything.
MIN_MAX_RECORDING_BYTES = 64 << 10
# What the limit note and the seal may add past the bound (a chain line each, a signed seal).
LIMIT_HEADROOM = 2048

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mb": 1 << 20,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1 << 30, "gib": 1 << 30, "t": 1 << 40, "tb": 1 << 40,
          "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d{1,15})\s*([A-Za-z]{0,3})\s*")


def parse_size(text: str) -> int:
    """`1GiB`, `512M`, `65536` -> bytes (units are powers of 1024); ValueError naming the text."""
    m = _SIZE.fullmatch(text)
    if not m or m.group(2).lower() not in _UNITS:
        raise ValueError(f"`{text}` is not a size (e.g. 1GiB, 512MiB, 65536)")
    return int(m.group(1)) * _UNITS[m.group(2).lower()]


def format_size(n: int) -> str:
    """Bytes as a person reads them: `1 GiB`, `64 KiB`, `1.5 MiB`, `900 bytes`."""
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def check_max_recording_bytes(value: int, field: str = "max_recording_bytes") -> int:
    """`value` when it is a usable bound; ValueError naming `field` and the limit."""
    if value < MIN_MAX_RECORDING_BYTES:
        raise ValueError(f"{field} {value} is below the minimum of {format_size(MIN_MAX_RECORDING_BYTES)}")
    return value
