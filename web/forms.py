"""Form input, bounded where it enters: the body's size, the number of fields, each field's length.

Only `application/x-www-form-urlencoded` bodies are read (every form of the console is one;
no file uploads). A field's bound is the API's own for the same field (`controlplane/bounds.py`),
so a person hears about an over-long reason here, in plain words, before any RPC.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import parse_qsl

from controlplane.bounds import FREE_TEXT, ID, NAME, TICKET

MAX_BODY_BYTES = 16 * 1024  # a form of the console is a few short fields and one text
MAX_FIELDS = 24

# field name -> the most characters (bytes as UTF-8 checked too) it may hold
FIELD_BOUNDS: dict[str, int] = {
    "csrf_token": 128,
    "resource": NAME, "login": NAME, "role": NAME, "user": NAME, "actor": NAME,
    "id": ID, "subject": ID,
    "reason": FREE_TEXT, "justification": FREE_TEXT, "comment": FREE_TEXT,
    "ticket": TICKET,
    "duration": 16, "emergency": 8, "action": 16, "flag": 8, "type": 64, "state": 32, "next": 256,
}


class FormError(ValueError):
    """A form over a bound or malformed: the message is what the person reads."""


@dataclass(frozen=True)
class Form:
    """A parsed form: one value per field (a repeated field is refused)."""

    fields: Mapping[str, str]

    def get(self, name: str, default: str = "") -> str:
        return self.fields.get(name, default)

    def text(self, name: str, *, required: bool = False, label: str | None = None) -> str:
        """The field stripped; `required` refuses it empty."""
        value = self.fields.get(name, "").strip()
        if required and not value:
            raise FormError(f"{label or name} is required")
        return value


def path_id(path_params: Mapping[str, str], what: str = "id") -> str:
    """The `{id}` of a change's path, within the API's bound for ids."""
    rid = path_params["id"]
    if len(rid) > ID:
        raise FormError(f"the {what} is longer than {ID} characters")
    return rid


def parse_form(body: bytes, content_type: str | None) -> Form:
    """Bounded parsing of a urlencoded body (see the module doc)."""
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise FormError("the form must be sent as application/x-www-form-urlencoded")
    if len(body) > MAX_BODY_BYTES:
        raise FormError(f"the form is larger than {MAX_BODY_BYTES // 1024} KiB")
    try:
        text = body.decode("ascii")  # urlencoded is ASCII; the escapes carry UTF-8
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False, max_num_fields=MAX_FIELDS,
                          encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise FormError(f"the form is malformed or has more than {MAX_FIELDS} fields") from None
    fields: dict[str, str] = {}
    for name, value in pairs:
        bound = FIELD_BOUNDS.get(name)
        if bound is None:
            raise FormError(f"unknown form field `{name[:64]}`")
        if name in fields:
            raise FormError(f"the field `{name}` is given twice")
        if len(value) > bound or len(value.encode()) > bound:
            raise FormError(f"{name} is longer than {bound} characters")
        fields[name] = value
    return Form(fields)


__all__ = ["FIELD_BOUNDS", "MAX_BODY_BYTES", "MAX_FIELDS", "Form", "FormError", "parse_form"]
