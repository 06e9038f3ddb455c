"""People who signed in through OpenID Connect, and the one-time nonces of sign-ins.

`people`: one row per person (name from the configured claim): verified email, policy
groups after mapping, the last sign-in's time, `auth_time` and `amr` (for step-up), and
the issuer and subject it came from. Other parts find a person's email with
`email_of(conn, name)`.

`signin_nonces`: a nonce handed out by BeginSignIn, kept as its SHA-256 only. A
CompleteSignIn consumes it with one conditional UPDATE, so a replayed nonce (or ID
token) is refused on every control plane sharing the store.

Functions take the transaction's SQLAlchemy `Connection` (`tx.conn`), so this module
adds no mixin to the store's `Tx`. `create_people_tables` is the one migration step.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Index,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    select,
    update,
)

from controlplane.store.base import from_us, to_us
from controlplane.store.tables import metadata

people = Table(
    "people", metadata,
    Column("name", String(200), primary_key=True),
    Column("email", String(320), nullable=False, default=""),  # "" unless the provider said it is verified
    Column("groups_json", Text, nullable=False, default="[]"),
    Column("issuer", String(512), nullable=False),
    Column("subject", String(512), nullable=False),
    Column("last_signin_us", BigInteger, nullable=False),
    Column("auth_time_us", BigInteger, nullable=True),  # when the person last authenticated at the provider
    Column("amr_json", Text, nullable=False, default="[]"),
)

signin_nonces = Table(
    "signin_nonces", metadata,
    Column("nonce_sha256", String(64), primary_key=True),
    Column("created_us", BigInteger, nullable=False),
    Column("expires_us", BigInteger, nullable=False),
    Column("used_us", BigInteger, nullable=True),
)
_NONCE_EXPIRY_INDEX = Index("ix_signin_nonces_expires", signin_nonces.c.expires_us)


def create_people_tables(conn: Connection) -> None:
    """The migration step: both tables and the nonce expiry index."""
    metadata.create_all(conn, tables=[people, signin_nonces])
    _NONCE_EXPIRY_INDEX.create(conn, checkfirst=True)


@dataclass(frozen=True)
class Person:
    """A signed-in person as stored."""

    name: str
    email: str
    groups: tuple[str, ...]
    issuer: str
    subject: str
    last_signin: datetime
    auth_time: datetime | None
    amr: tuple[str, ...]


def _row_person(row: object) -> Person:
    r = row._mapping  # type: ignore[attr-defined]
    last = from_us(r["last_signin_us"])
    assert last is not None
    return Person(r["name"], r["email"], tuple(json.loads(r["groups_json"])), r["issuer"], r["subject"],
                  last, from_us(r["auth_time_us"]), tuple(json.loads(r["amr_json"])))


def save_person(conn: Connection, person: Person) -> None:
    """Insert or replace the person's row (a sign-in)."""
    values = {
        "email": person.email, "groups_json": json.dumps(list(person.groups)), "issuer": person.issuer,
        "subject": person.subject, "last_signin_us": to_us(person.last_signin),
        "auth_time_us": to_us(person.auth_time), "amr_json": json.dumps(list(person.amr)),
    }
    done = conn.execute(update(people).where(people.c.name == person.name).values(**values))
    if done.rowcount == 0:
        conn.execute(insert(people).values(name=person.name, **values))


def get_person(conn: Connection, name: str) -> Person | None:
    row = conn.execute(select(people).where(people.c.name == name)).first()
    return _row_person(row) if row is not None else None


def all_people(conn: Connection) -> list[Person]:
    return [_row_person(r) for r in conn.execute(select(people).order_by(people.c.name))]


def email_of(conn: Connection, name: str) -> str | None:
    """The verified email of the person called `name`, or None (never signed in, or no verified email)."""
    row = conn.execute(select(people.c.email).where(people.c.name == name)).first()
    return row[0] or None if row is not None else None


def nonce_digest(nonce: str) -> str:
    return hashlib.sha256(nonce.encode()).hexdigest()


def put_nonce(conn: Connection, nonce: str, now: datetime, expires: datetime, limit: int) -> bool:
    """Remember a fresh nonce (and forget those that expired: the table stays small); False when
    `limit` nonces are already open (the sign-in listener needs no certificate: anyone may ask)."""
    now_us = to_us(now)
    conn.execute(delete(signin_nonces).where(signin_nonces.c.expires_us < now_us))
    open_count = conn.execute(select(func.count()).select_from(signin_nonces)
                              .where(signin_nonces.c.used_us.is_(None))).scalar_one()
    if open_count >= limit:
        return False
    conn.execute(insert(signin_nonces).values(nonce_sha256=nonce_digest(nonce), created_us=now_us,
                                              expires_us=to_us(expires), used_us=None))
    return True


def consume_nonce(conn: Connection, nonce: str, now: datetime) -> str:
    """Use a nonce once: "ok", or why not ("unknown", "used", "expired")."""
    digest, now_us = nonce_digest(nonce), to_us(now)
    done = conn.execute(update(signin_nonces).where(
        signin_nonces.c.nonce_sha256 == digest, signin_nonces.c.used_us.is_(None),
        signin_nonces.c.expires_us >= now_us).values(used_us=now_us))
    if done.rowcount == 1:
        return "ok"
    row = conn.execute(select(signin_nonces.c.used_us, signin_nonces.c.expires_us)
                       .where(signin_nonces.c.nonce_sha256 == digest)).first()
    if row is None:
        return "unknown"
    return "used" if row[0] is not None else "expired"


__all__ = ["Person", "all_people", "consume_nonce", "create_people_tables", "email_of", "get_person",
           "people", "put_nonce", "save_person", "signin_nonces"]
