"""Fixtures for recorder tests: a real file store in a temporary data dir."""
from __future__ import annotations

from pathlib import Path

import pytest

from recorder import FileRecordingStore

PASSPHRASE = b"test recorder passphrase"


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
def store(data_dir: Path) -> FileRecordingStore:
    return FileRecordingStore(data_dir, passphrase=PASSPHRASE)
