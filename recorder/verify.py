"""Checking a recording against its hash chain and signed seal.

Three outcomes, kept apart because they mean different things to an auditor:
- verified: every line matches the chain, the seal is signed by a trusted key
  and covers exactly these lines;
- unsealed: the recorder stopped without closing (a crash); every line that is
  there matches the chain, but the end cannot be proven;
- tampered: something was edited, removed, inserted, reordered, cut, or the
  seal is not ours.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from recorder import chain
from recorder.header import RecordingHeader


@dataclass(slots=True)
class VerifyResult:
    """`ok` only when intact AND sealed. `intact` is False only on evidence of tampering."""

    ok: bool
    problems: list[str]
    sealed: bool
    final_hash: str | None  # hex: the seal's, or the last verified line's when unsealed
    intact: bool = True
    events: int = 0  # events verified (header excluded)
    seal: chain.Seal | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        """"verified", "unsealed" or "tampered"."""
        if not self.intact:
            return "tampered"
        return "verified" if self.sealed else "unsealed"

    def summary(self) -> str:
        """One plain line for a person."""
        if self.status == "verified":
            return f"verified: {self.events} events, sealed, final hash {self.final_hash}"
        if self.status == "unsealed":
            return (f"unsealed but intact up to {self.events} events: the recorder stopped "
                    f"without closing, so the end cannot be proven")
        return "tampered: " + "; ".join(self.problems)


def _parse_chain(raw: bytes) -> tuple[list[bytes], chain.Seal | None, list[str], bool]:
    """Hashes, the seal, problems, and whether a torn (crash-cut) last line was dropped."""
    hashes: list[bytes] = []
    seal: chain.Seal | None = None
    problems: list[str] = []
    lines = raw.split(b"\n")
    torn = lines.pop() != b""  # text after the last newline: an unfinished write
    for number, line in enumerate(lines, 1):
        if seal is not None:
            problems.append(f"chain line {number} comes after the seal")
            break
        if line.startswith(b"{"):
            try:
                seal = chain.Seal.from_line(line.decode("utf-8"))
            except (ValueError, UnicodeDecodeError) as exc:
                problems.append(f"chain line {number}: {exc}")
                break
            continue
        try:
            if len(line) != 64:
                raise ValueError
            hashes.append(bytes.fromhex(line.decode("ascii")))
        except (ValueError, UnicodeDecodeError):
            problems.append(f"chain line {number} is not a hash")
            break
    return hashes, seal, problems, torn


def verify_recording(
    ref: str,
    data_lines: Iterable[bytes],
    chain_bytes: bytes,
    trusted_keys: list[Ed25519PublicKey],
    *,
    closed: bool = False,
    expected_final_hash: str | None = None,
) -> VerifyResult:
    """Verify one recording.

    `data_lines` are the data file's lines as read in binary (with their
    newlines); `closed` says the store believes the recording was sealed;
    `expected_final_hash` is the hash reported to the control plane at
    session end, when the caller has it.
    """
    hashes, seal, problems, chain_torn = _parse_chain(chain_bytes)
    notes: list[str] = []
    h = chain.genesis(ref)
    n_lines = 0
    matched = 0  # leading lines that match the chain
    good_hash: bytes | None = None
    mismatch: int | None = None
    torn_data = False
    for raw in data_lines:
        if not raw.endswith(b"\n"):
            torn_data = True  # only the last line can lack its newline
            break
        line = raw[:-1]
        if n_lines == 0:
            try:
                header = RecordingHeader.from_line(line)
                if header.ref != ref:
                    problems.append(f"header names recording `{header.ref}`, not `{ref}`")
            except ValueError as exc:
                problems.append(f"line 1: {exc}")
        h = chain.link(h, line)
        if mismatch is None and n_lines < len(hashes):
            if h == hashes[n_lines]:
                matched = n_lines + 1
                good_hash = h
            else:
                mismatch = n_lines
        n_lines += 1

    if mismatch is not None:
        problems.append(f"line {mismatch + 1} does not match its chain hash: "
                        f"edited, inserted, removed or reordered")
    if seal is not None:
        bad_sig = chain.check_seal_signature(seal, trusted_keys)
        if bad_sig:
            problems.append(bad_sig)
        if seal.ref != ref:
            problems.append(f"seal belongs to recording `{seal.ref}`")
        if torn_data:
            problems.append(f"line {n_lines + 1} is cut short")
        if chain_torn:
            problems.append("chain file is cut short")
        if len(hashes) != n_lines:
            problems.append(f"data has {n_lines} lines but the chain {len(hashes)}: lines were cut or added")
        if seal.events + 1 != n_lines:
            problems.append(f"seal counts {seal.events} events but the recording holds {max(n_lines - 1, 0)}")
        if seal.final_hash != h.hex():
            problems.append("final hash does not match the seal")
        if expected_final_hash is not None and expected_final_hash != seal.final_hash:
            problems.append("final hash differs from the one reported at session end")
        intact = not problems
        return VerifyResult(ok=intact, problems=problems, sealed=True, final_hash=seal.final_hash,
                            intact=intact, events=max(n_lines - 1, 0) if intact else max(matched - 1, 0),
                            seal=seal, notes=notes)

    # Unsealed. The writer hands data to the OS before its chain hashes, so after a
    # crash the data may run ahead of the chain, never behind it.
    if len(hashes) > n_lines:
        problems.append(f"the chain covers {len(hashes)} lines but the data holds {n_lines}: lines were removed")
    if closed:
        problems.append("the seal is missing although the recording was closed: its end was cut")
    if expected_final_hash is not None:
        problems.append("the recording is not sealed although it was reported closed: its end was cut")
    intact = not problems
    events = max(matched - 1, 0)
    if n_lines > matched and mismatch is None:
        notes.append(f"{n_lines - matched} line(s) after event {events} are not covered by the chain "
                     f"(written just before the recorder stopped) and are not verified")
    if torn_data or chain_torn:
        notes.append("an unfinished last line was ignored")
    if intact:
        problems.insert(0, f"not sealed: intact up to {events} events; the end cannot be proven")
    return VerifyResult(ok=False, problems=problems, sealed=False,
                        final_hash=good_hash.hex() if good_hash else None,
                        intact=intact, events=events, seal=None, notes=notes)
