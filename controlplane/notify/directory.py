"""Where a person is reached: the one lookup of a person's email address.

Today the address comes from `users:` in policies.yaml (`attributes: {email: ...}`). Sign-in
through the identity provider will keep signed-in people's addresses in its own table; the
server then passes its own lookup in place of this one (`Notifier(email_of=...)`), so
everything else stays as it is.
"""
from __future__ import annotations

import re

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


__all__ = ["email_of", "valid_address"]
