"""Run untrusted policy work in a child process with CPU-time, memory and wall-clock limits.

Checking a policy file someone else wrote (ValidatePolicy, `jitgate policy
check/test/eval/diff`) runs that file's CEL and tests. The static bounds and the
CEL budget (policy.limits) keep that work small; this is the second wall: the
work runs in a fresh interpreter that sets RLIMIT_CPU and RLIMIT_AS on itself
before importing anything, and the parent kills it at a wall-clock timeout. A
limit hit is a `SandboxError` with a plain sentence, never a hang or a traceback,
and nothing of the caller's process (locks, threads, memory) is shared.

Standard library only: both the CLI and the control plane use it. The child
runs `python -m policy.sandbox CPU BYTES MODULE:FUNCTION ARGS...`; the
function reads `sys.argv` (set to `[MODULE, *ARGS]`) like a console script.
"""
from __future__ import annotations

import importlib
import os
import resource
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from jitgate.errors import JitgateError
from policy import limits

# Set in the child's environment: a CLI command that finds it runs its work directly.
INSIDE_ENV = "JITGATE_POLICY_SANDBOX"
# Overrides of the limits for the CLI (e.g. a CI runner with less memory).
CPU_ENV = "JITGATE_SANDBOX_CPU_SECONDS"
MEMORY_ENV = "JITGATE_SANDBOX_MEMORY_MB"
WALL_ENV = "JITGATE_SANDBOX_WALL_SECONDS"
# The child's exit status when it ran out of memory (distinct from 0/1/2/3 of the CLI).
MEMORY_EXIT = 86
_ROOT = Path(__file__).resolve().parent.parent  # the folder holding the `policy` package


class SandboxError(JitgateError):
    """The child hit a limit or died: `str()` is one plain sentence."""

    code = "policy.limit"


@dataclass(frozen=True)
class Limits:
    """What one sandboxed run may use."""

    cpu_seconds: int = limits.SANDBOX_CPU_SECONDS
    memory_bytes: int = limits.SANDBOX_MEMORY_BYTES
    wall_seconds: float = limits.SANDBOX_WALL_SECONDS

    def __post_init__(self) -> None:
        if self.cpu_seconds < 1 or self.memory_bytes < 64 * 1024 * 1024 or self.wall_seconds <= 0:
            raise ValueError("sandbox limits must be at least 1 s of CPU, 64 MiB and a positive timeout")

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """The defaults, overridden by JITGATE_SANDBOX_* variables (ValueError when not numbers)."""
        env = os.environ if environ is None else environ
        cpu = int(env.get(CPU_ENV, limits.SANDBOX_CPU_SECONDS))
        memory = int(env.get(MEMORY_ENV, limits.SANDBOX_MEMORY_BYTES // (1024 * 1024))) * 1024 * 1024
        wall = float(env.get(WALL_ENV, max(limits.SANDBOX_WALL_SECONDS, 2 * cpu)))
        return cls(cpu, memory, wall)


def inside() -> bool:
    """Whether this process is a sandbox child."""
    return os.environ.get(INSIDE_ENV) == "1"


def run(target: str, args: list[str], lim: Limits, *, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run `target` ("module:function") in a limited child; its output is captured as text.

    Returns the finished process (any exit status the function chose); raises
    SandboxError when a limit was hit or the child was killed by a signal.
    """
    env = dict(os.environ)
    env[INSIDE_ENV] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(_ROOT), *filter(None, [env.get("PYTHONPATH")])])
    cmd = [sys.executable, "-m", "policy.sandbox", str(lim.cpu_seconds), str(lim.memory_bytes), target, *args]
    try:
        proc = subprocess.run(cmd, input=stdin if stdin is not None else "", capture_output=True, text=True,
                              encoding="utf-8", errors="replace", timeout=lim.wall_seconds, env=env)
    except subprocess.TimeoutExpired:  # subprocess.run has killed the child
        raise SandboxError(f"stopped after {lim.wall_seconds:g} s of wall-clock time (the limit)") from None
    if proc.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        raise SandboxError(f"stopped after {lim.cpu_seconds} s of CPU time (the limit)")
    if proc.returncode == MEMORY_EXIT:
        raise SandboxError(f"stopped: it needed more than {lim.memory_bytes // (1024 * 1024)} MiB of memory "
                           "(the limit)")
    if proc.returncode < 0:
        raise SandboxError(f"stopped by signal {signal.Signals(-proc.returncode).name} "
                           f"(memory limit {lim.memory_bytes // (1024 * 1024)} MiB)")
    return proc


def _apply_limits(cpu_seconds: int, memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed child leaves no core file
    # Soft limit: SIGXCPU; one second later the hard limit: SIGKILL.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))


def main(argv: list[str]) -> None:
    """The child: limit itself, then call `module:function` with sys.argv = [module, *args]."""
    cpu, memory, target, *args = argv
    _apply_limits(int(cpu), int(memory))
    module, _, function = target.partition(":")
    sys.argv = [module, *args]
    try:
        getattr(importlib.import_module(module), function or "main")()
    except MemoryError:
        os.write(2, b"out of memory\n")  # allocates nothing new
        os._exit(MEMORY_EXIT)


if __name__ == "__main__":
    main(sys.argv[1:])
