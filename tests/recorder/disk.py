"""A real small filesystem for recordings, to make a disk full for real (ENOSPC).

`SmallDisk(path, size)` mounts a tmpfs of `size` at `path` (root only: tests ask
for it with `require_small_disk`, which fails under CI and skips elsewhere);
`fill()` writes a filler file until the filesystem refuses more, `free()` removes
it, `unmount()` ends it. What a recorder meets on it is the kernel's own
"No space left on device", not an imitation.
"""
from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

from tests.support import require

FILLER = ".filler"


def require_small_disk() -> None:
    """Mounting a tmpfs needs root (CAP_SYS_ADMIN)."""
    require(os.geteuid() == 0, "root, to mount a small tmpfs as a full recordings disk")


class SmallDisk:
    """A tmpfs of `size` (e.g. "1m") mounted at `path` until `unmount()`."""

    def __init__(self, path: Path, size: str = "1m") -> None:
        self.path = Path(path)
        self.size = size
        self.mounted = False

    def mount(self) -> SmallDisk:
        require_small_disk()
        self.path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0700", "tmpfs", str(self.path)],
                       check=True, capture_output=True)
        self.mounted = True
        return self

    def fill(self) -> int:
        """Write a filler file until the filesystem is full; the bytes it took."""
        total = 0
        fd = os.open(self.path / FILLER, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for chunk in (b"\0" * 65536, b"\0" * 4096, b"\0"):
                while True:
                    try:
                        total += os.write(fd, chunk)
                    except OSError as exc:
                        if exc.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)
        return total

    def free(self) -> None:
        (self.path / FILLER).unlink(missing_ok=True)

    def unmount(self) -> None:
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False

    def __enter__(self) -> SmallDisk:
        return self.mount()

    def __exit__(self, *exc: object) -> None:
        self.unmount()
