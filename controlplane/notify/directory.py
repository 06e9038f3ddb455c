"""Where a person is reached: the one lookup of a person's email address.

An address written in policies.yaml (`users: NAME: attributes: {email: ...}`) wins; else the
verified email of the person's last sign-in through the identity provider (the `people` table,
`controlplane/store/people.py`).
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from policy import PolicySet

MAX_ADDRESS = 254  # RFC 5321's path limit
# One plain address: no display name, no spaces, no line breaks (nothing to inject into a header).
_ADDRESS = re.compile(r"[^@\s<>,;\"()\\]+@[^@\s<>,;\"()\\]+\.[^@\s<>,;\"()\\]+")


def valid_address(value: object) -> bool:
    return isinstance(value, str) and len(value) <= MAX_ADDRESS and _ADDRESS.fullmatch(value) is not None


def email_of(ps: PolicySet, name: str) -> str | None:
    """`name`'s email address from the policy directory (`users.NAME.attributes.email`), or None
    when there is none or it is not one plain address."""
    user = ps.users.get(name)
    if user is None:
        return None
    value = user.attributes.get("email")
    return value if valid_address(value) else None


def directory_lookup(store: Any) -> Callable[[PolicySet, str], str | None]:
    """The lookup the server uses: policies.yaml first, then the signed-in person's verified email."""
    from controlplane.signin.service import email_of as signed_in_email_of

    def lookup(ps: PolicySet, name: str) -> str | None:
        found = email_of(ps, name)
        if found is None:
            found = signed_in_email_of(store, name)
        return found if valid_address(found) else None
    return lookup


__all__ = ["directory_lookup", "email_of", "valid_address"]
