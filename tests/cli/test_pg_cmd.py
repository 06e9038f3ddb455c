"""`cli/pg_cmd.py`: `psql`/`db-connect` keep the CA they verify the broker with per control plane.

Before, both wrote `~/.jitgate/pg/ca.pem` whichever control plane issued it, so a
URI printed for one control plane broke (or trusted the wrong CA) once a command
ran against another.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from tests.cli.conftest import POLICIES, as_json, jitgate
from tests.cluster import NO_MODEL, ControlPlane


@pytest.fixture(scope="module")
def other_cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    with ControlPlane(tmp_path_factory.mktemp("cli-other-cp"), POLICIES, config=NO_MODEL) as plane:
        yield plane


def connect(plane: ControlPlane, home: Path) -> dict:
    env = {**plane.cli_env("alice"), "HOME": str(home)}
    return as_json("db-connect", "dev-db", "--role", "readonly", "-r", "report", "-d", "10m",
                   "--broker", "127.0.0.1:6432", env=env)


def test_each_control_plane_keeps_its_own_ca_file(cp: ControlPlane, other_cp: ControlPlane, tmp_path: Path) -> None:
    first = connect(cp, tmp_path)
    second = connect(other_cp, tmp_path)
    first_ca, second_ca = Path(first["sslrootcert"]), Path(second["sslrootcert"])
    assert first_ca != second_ca and first_ca.parent.parent == tmp_path / ".jitgate" / "pg"
    assert first_ca.read_bytes() == cp.ca_pem and second_ca.read_bytes() == other_cp.ca_pem  # still its own
    assert cp.ca_pem != other_cp.ca_pem
    assert first_ca.parent.name == cp.address.replace(":", "%3A")
    assert oct(first_ca.stat().st_mode & 0o777) == "0o600" and oct(first_ca.parent.stat().st_mode & 0o777) == "0o700"
    uri = urlparse(first["uri"])
    assert parse_qs(uri.query)["sslrootcert"] == [str(first_ca)]  # as libpq decodes it


def test_psql_writes_the_ca_of_the_control_plane_it_asked(other_cp: ControlPlane, tmp_path: Path) -> None:
    env = {**other_cp.cli_env("alice"), "HOME": str(tmp_path)}
    # No broker listens on port 9: psql fails to connect, after jitgate wrote the CA it was given.
    jitgate("psql", "dev-db", "--role", "readonly", "-r", "look", "-d", "5m", "--broker", "127.0.0.1:9",
            "--", "-c", "select 1", env=env)
    written = tmp_path / ".jitgate" / "pg" / other_cp.address.replace(":", "%3A") / "ca.pem"
    assert written.read_bytes() == other_cp.ca_pem
    assert not (tmp_path / ".jitgate" / "pg" / "ca.pem").exists()
