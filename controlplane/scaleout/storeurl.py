"""Which store a server opens: `--store URL` / `store:` in server.yaml, else SQLite in the data directory."""
from __future__ import annotations

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from controlplane.config import ConfigError

MAX_URL = 2048  # a store URL is typed by a person or a deploy tool: anything longer is a mistake
PG_SCHEMES = ("postgresql", "postgresql+psycopg")


class StoreUrlError(ConfigError):
    """A store URL jitgate cannot open, as one plain sentence."""


def normalize(url: str) -> str:
    """A store URL as SQLAlchemy opens it: `postgresql://` runs on psycopg (3), the one driver
    jitgate depends on; `sqlite:///PATH` as is. Anything else is refused with a plain message."""
    if len(url) > MAX_URL:
        raise StoreUrlError(f"the store URL is longer than {MAX_URL} characters")
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise StoreUrlError("the store must be a URL like postgresql://user@host:5432/db "
                            "or sqlite:///path/to/jitgate.db") from None
    if parsed.drivername == "sqlite":
        if not parsed.database:
            raise StoreUrlError("a sqlite store URL needs a file path: sqlite:///path/to/jitgate.db")
        return url
    if parsed.drivername not in PG_SCHEMES:
        raise StoreUrlError(f"store `{parsed.drivername}://` is not supported: use postgresql:// or sqlite:///")
    if not parsed.database:
        raise StoreUrlError("a postgresql store URL needs a database name: postgresql://user@host:5432/DB")
    return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)


def is_postgresql(url: str) -> bool:
    return url.startswith("postgresql")


def shown(url: str) -> str:
    """The URL for logs and messages: the password never appears."""
    return make_url(url).render_as_string(hide_password=True) if url else ""


__all__ = ["StoreUrlError", "is_postgresql", "normalize", "shown"]
