"""The `listen.addr` file a broker writes once it accepts connections (tests and the demo read it)."""
from __future__ import annotations

import os
from pathlib import Path


def publish_listen_address(path: Path, host: str, port: int) -> None:
    """Write `HOST:PORT` atomically, so a reader never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(f"{host}:{port}\n")
    os.replace(tmp, path)
