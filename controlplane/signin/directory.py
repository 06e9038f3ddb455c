"""Signed-in people as users of the policies in force, without a `users:` entry each.

`PeopleDirectory` stands where the control plane's policy holder stands
(`ledger.policy`): `.current` is the policy set in force with every signed-in person
added to its users, groups from the provider (mapped through `group_map`) joined to
what `users:`/`groups:` in policies.yaml give them; a `users:` entry adds `manager` and
`attributes`. Everything else is the holder's. The merged set is built once per policy
version and sign-in change (a dict copy; rules, CEL and the index are shared), so a
decision pays nothing for it.

A person keeps the groups of their last sign-in until the next one; a certificate from
a sign-in expires within hours (`max_certificate_hours`), which bounds how long stale
groups can act.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from policy import engine
from policy.model import User
from policy.policyset import PolicySet


def merge_people(base: PolicySet, people: dict[str, tuple[str, ...]]) -> PolicySet:
    """`base` with `people` (name -> policy groups) among its users."""
    if not people:
        return base
    users = dict(base.users)
    members = {g: set(ms) for g, ms in base.groups.items()}
    for name, groups in people.items():
        known = users.get(name)
        own = tuple(known.groups) if known else ()
        joined = tuple(sorted(set(own) | set(groups)))
        users[name] = replace(known, groups=joined) if known else User(name, joined)
        for g in joined:
            members.setdefault(g, set()).add(name)
    changed = {n: users[n] for n in people}
    user_cel = dict(base._user_cel)
    user_cel.update({n: engine.user_value(u) for n, u in changed.items()})
    by_user = dict(base._groups)
    by_user.update({n: frozenset(u.groups) for n, u in changed.items()})
    return replace(base, users=users, groups={g: frozenset(ms) for g, ms in members.items()},
                   _user_cel=user_cel, _groups=by_user)


class PeopleDirectory:
    """The policy holder, with signed-in people added to `.current` (see the module doc)."""

    def __init__(self, holder: Any) -> None:
        self._holder = holder
        self._lock = threading.Lock()
        self._people: dict[str, tuple[str, ...]] = {}
        self._generation = 0
        self._cache: tuple[object, int, PolicySet] | None = None

    @property
    def holder(self) -> Any:
        return self._holder

    @property
    def current(self) -> PolicySet:
        base = self._holder.current
        with self._lock:
            cached = self._cache
            if cached is not None and cached[0] is base and cached[1] == self._generation:
                return cached[2]
            merged = merge_people(base, dict(self._people))
            self._cache = (base, self._generation, merged)
            return merged

    def load(self, people: Iterable[tuple[str, Iterable[str]]]) -> None:
        """Every stored person (at start)."""
        with self._lock:
            self._people = {name: tuple(groups) for name, groups in people}
            self._generation += 1

    def put(self, name: str, groups: Iterable[str]) -> None:
        """A sign-in (after its transaction committed)."""
        groups = tuple(groups)
        with self._lock:
            if self._people.get(name) == groups:
                return
            self._people[name] = groups
            self._generation += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._holder, name)


class StoredPeopleDirectory(PeopleDirectory):
    """A PeopleDirectory for a process that does not take the sign-ins itself (the notification
    sender, controlplane/notify/process.py): `.current` reads the people from the store each
    time, so an approver who signed in a moment ago is among the users the sender tells.
    One small query per message; the merge is redone only when someone's groups changed."""

    def __init__(self, holder: Any, read_people: Callable[[], Iterable[tuple[str, Iterable[str]]]]) -> None:
        super().__init__(holder)
        self._read_people = read_people

    @property
    def current(self) -> PolicySet:
        people = {name: tuple(groups) for name, groups in self._read_people()}
        with self._lock:
            if people != self._people:
                self._people = people
                self._generation += 1
        return super().current


__all__ = ["PeopleDirectory", "StoredPeopleDirectory", "merge_people"]
