"""How the suite is split between pytest-xdist workers (`-n 2 --dist loadgroup`, README's test command).

A worker runs a whole unit, in file order, so each stack is started once: a unit is a test
file, or, for the tests using a session- or package-scoped fixture of a folder's conftest (the
API tests' shared control plane, the CLI's, the recommender's trained model, the locks' two
brokers), that whole folder. Without xdist the marks change nothing.
"""
from __future__ import annotations

import pytest


def _shared_folder(item: pytest.Item) -> str | None:
    """The folder whose conftest gives `item` a session- or package-scoped fixture, if any."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return None
    for defs in info.name2fixturedefs.values():
        fixture = defs[-1]  # the one in force (a module may override a conftest's fixture)
        baseid = fixture.baseid or ""
        if fixture.scope in ("session", "package") and baseid.startswith("tests/"):
            return baseid
    return None


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # A file stays whole (its module-scoped stacks start once): it joins the folder's unit
    # when any of its tests uses the folder's shared fixture.
    unit_of: dict[str, str] = {}
    for item in items:
        path = item.nodeid.split("::", 1)[0]
        folder = _shared_folder(item)
        if folder is not None or path not in unit_of:
            unit_of[path] = folder or unit_of.get(path, path)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit_of[item.nodeid.split("::", 1)[0]]))
