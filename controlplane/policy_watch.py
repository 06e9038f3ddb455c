"""The policy set in force, and its reload on SIGHUP or when the file changes.

A candidate is compiled as a whole (`policy.load_policy_set`) before it
replaces the set in force; a refused candidate is logged and audited, and the
old set keeps serving. A watcher thread polls the files' mtimes and content
hash (default every second): cheap, and it works on every file system.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policy import PolicySet, load_policy_set

log = logging.getLogger(__name__)

# (version, ok, errors) -> None; the server points it at core.audit.record_policy_reload.
ReloadListener = Callable[[str, bool, list[str]], None]


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in (".yaml", ".yml"))
    return [path]


def fingerprint(path: Path) -> str:
    """A hash of the names and bytes of the policy files (changes when any file does)."""
    h = hashlib.sha256()
    for f in _files(path):
        h.update(str(f).encode() + b"\0")
        try:
            h.update(f.read_bytes())
        except OSError:
            h.update(b"<unreadable>")
        h.update(b"\0")
    return h.hexdigest()


def _stat_key(path: Path) -> tuple[Any, ...]:
    out: list[Any] = []
    for f in _files(path):
        try:
            st = f.stat()
            out.append((str(f), st.st_mtime_ns, st.st_size))
        except OSError:
            out.append((str(f), None, None))
    return tuple(out)


def load(path: Path) -> PolicySet:
    """Load and compile a policy set (raises policy.PolicyLoadError with every problem)."""
    return load_policy_set(Path(path))


def error_lines(exc: BaseException) -> list[str]:
    """`file:line:col: message` per problem of a PolicyLoadError (or the plain message)."""
    errors = getattr(exc, "errors", None)
    if errors:
        return [str(e) for e in errors]
    return [str(exc) or type(exc).__name__]


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    changed: bool
    version: str
    errors: list[str]


class PolicyHolder:
    """Holds the PolicySet in force (`.current`); swaps it atomically on a good reload."""

    def __init__(self, path: Path, policy_set: PolicySet, clock: Callable[[], dt.datetime] | None = None) -> None:
        self.path = Path(path)
        self._clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self._current = policy_set
        self._loaded_at = self._clock()
        self._fingerprint = fingerprint(self.path)
        self._stat = _stat_key(self.path)
        self._lock = threading.Lock()
        self._listeners: list[ReloadListener] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def load(cls, path: Path) -> PolicyHolder:
        """Load the set at `path` (raises PolicyLoadError: the server refuses to start)."""
        return cls(path, load(path))

    @property
    def current(self) -> PolicySet:
        return self._current

    @property
    def loaded_at(self) -> dt.datetime:
        return self._loaded_at

    def on_reload(self, listener: ReloadListener) -> None:
        self._listeners.append(listener)

    def reload(self, force: bool = False) -> ReloadResult:
        """Load the files again if they changed (or `force`); keep the old set on any error."""
        with self._lock:
            stat = _stat_key(self.path)
            new_fp = fingerprint(self.path)
            self._stat = stat
            if not force and new_fp == self._fingerprint:
                return ReloadResult(True, False, self._current.version, [])
            self._fingerprint = new_fp
            try:
                candidate = load(self.path)
            except Exception as e:  # PolicyLoadError, or an unreadable file: refuse, keep serving
                errors = error_lines(e)
                log.error("policy reload refused, keeping %s:\n  %s", self._current.version, "\n  ".join(errors))
                # The refused set has no policy version; its files' hash names it in the audit log.
                self._notify(f"files:sha256:{new_fp}", False, errors)
                return ReloadResult(False, True, self._current.version, errors)
            changed = candidate.version != self._current.version
            self._current = candidate
            self._loaded_at = self._clock()
            log.info("policy reloaded: %s", candidate.version)
        if changed or force:
            self._notify(candidate.version, True, [])
        return ReloadResult(True, changed, candidate.version, [])

    def _notify(self, version: str, ok: bool, errors: list[str]) -> None:
        for listener in self._listeners:
            try:
                listener(version, ok, errors)
            except Exception:
                log.exception("policy reload listener failed")

    def changed_on_disk(self) -> bool:
        """Cheap check: did any policy file's mtime or size move since the last look?"""
        return _stat_key(self.path) != self._stat

    def start_watching(self, interval: float = 1.0) -> None:
        """Poll the files every `interval` seconds in a daemon thread and reload on change."""
        if self._thread is not None:
            return

        def run() -> None:
            while not self._stop.wait(interval):
                try:
                    # The hash catches edits that keep mtime and size (same-second rewrites).
                    if self.changed_on_disk() or fingerprint(self.path) != self._fingerprint:
                        self.reload()
                except Exception:
                    log.exception("policy watcher")

        self._thread = threading.Thread(target=run, name="policy-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
