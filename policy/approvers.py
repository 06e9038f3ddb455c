"""Approver words (POLICY.md rule 6) and who is eligible for a level.

Words: `user:NAME`, `group:NAME`, `manager` (the requester's manager) and
`owner` (the resource's owners). A resource's `owners` entries are themselves
`group:NAME`, `user:NAME` or a bare user name.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

from policy.model import Resource, User

SPECIAL_WORDS = ("manager", "owner")


def split_word(word: str) -> tuple[str, str]:
    """(kind, name) of an approver word: kind is user, group, manager or owner.

    Raises ValueError for anything else.
    """
    if word in SPECIAL_WORDS:
        return word, ""
    kind, sep, name = word.partition(":")
    if sep and kind in ("user", "group") and name:
        return kind, name
    raise ValueError(f"unknown approver `{word}` (use user:NAME, group:NAME, manager or owner)")


def split_owner(entry: str) -> tuple[str, str]:
    """(kind, name) of a resource owner entry: `group:x`, `user:x` or bare user `x`."""
    kind, sep, name = entry.partition(":")
    if not sep:
        return "user", entry
    if kind in ("user", "group") and name:
        return kind, name
    raise ValueError(f"unknown owner `{entry}` (use group:NAME, user:NAME or a user name)")


def is_eligible(
    approvers: list[str] | tuple[str, ...],
    approver: str,
    requester: str,
    resource: Resource | None,
    users: Mapping[str, User],
    groups_of: Callable[[str], frozenset[str]],
) -> bool:
    """True when `approver` may approve a level named by `approvers` for this request.

    Nobody approves their own request; unknown words never match (fail closed).
    """
    if not approver or approver == requester:
        return False
    for word in approvers:
        try:
            kind, name = split_word(word)
        except ValueError:
            continue
        if _names(kind, name, approver, groups_of):
            return True
        if kind == "manager":
            req = users.get(requester)
            if req is not None and req.manager == approver:
                return True
        if kind == "owner" and resource is not None:
            for entry in resource.owners:
                try:
                    okind, oname = split_owner(entry)
                except ValueError:
                    continue
                if _names(okind, oname, approver, groups_of):
                    return True
    return False


def _names(kind: str, name: str, approver: str, groups_of: Callable[[str], frozenset[str]]) -> bool:
    """Whether `user:NAME` / `group:NAME` (split) names `approver`."""
    return (kind == "user" and approver == name) or (kind == "group" and name in groups_of(approver))
