"""controlplane/scaleout/ without servers: the store URL, the passphrase a shared store needs,
and the shared CA files a plane accepts from the store."""
from __future__ import annotations

import pytest

from controlplane.config import ConfigError, build_config
from controlplane.scaleout.shared_ca import SharedCAError, _check_stored, require_shared_passphrase
from controlplane.scaleout.storeurl import normalize, shown
from controlplane.store.shared import CA_FILE_MAX_BYTES, CA_FILES_MAX


def test_store_urls():
    assert normalize("postgresql://u:secret@db:5432/jitgate").startswith("postgresql+psycopg://u:secret@db")
    assert "secret" not in shown(normalize("postgresql://u:secret@db:5432/jitgate"))
    assert normalize("sqlite:////var/lib/jitgate/jitgate.db") == "sqlite:////var/lib/jitgate/jitgate.db"
    for bad, why in [("mysql://h/db", "not supported"), ("postgresql://h:5432", "needs a database name"),
                     ("not a url", "must be a URL"), ("sqlite://", "needs a file path"),
                     ("postgresql://h/" + "x" * 3000, "longer than")]:
        with pytest.raises(ConfigError, match=why):
            normalize(bad)


def test_config_store_is_checked_at_start(tmp_path):
    (tmp_path / "policies.yaml").write_text("version: 1\n")
    config = build_config(data_dir=tmp_path, store="postgresql://u@db/jitgate")
    assert config.store == "postgresql+psycopg://u@db/jitgate"
    assert build_config(data_dir=tmp_path).store == ""  # SQLite in the data directory
    with pytest.raises(ConfigError, match="not supported"):
        build_config(data_dir=tmp_path, store="redis://x/0")
    (tmp_path / "server.yaml").write_text("store: [1]\n")
    with pytest.raises(ConfigError):
        build_config(data_dir=tmp_path, config_file=tmp_path / "server.yaml")


def test_a_shared_store_needs_the_passphrase_from_a_secret_source():
    with pytest.raises(SharedCAError, match="JITGATE_CA_PASSPHRASE_FILE"):
        require_shared_passphrase({})
    with pytest.raises(SharedCAError):
        require_shared_passphrase({"JITGATE_CA_PASSPHRASE_FILE": ""})
    require_shared_passphrase({"JITGATE_CA_PASSPHRASE_COMMAND": "pass show jitgate"})


def test_stored_ca_files_are_bounded_and_stay_inside_ca():
    _check_stored({"x509-ca.key": b"k", "ssh/jitgate-user-ca-1.key": b"k"})
    for bad in ["../server/key.pem", "/etc/passwd", "passphrase", "ssh/../../x"]:
        with pytest.raises(SharedCAError, match="bad path"):
            _check_stored({bad: b"k"})
    with pytest.raises(SharedCAError, match="larger than"):
        _check_stored({"x509-ca.key": b"k" * (CA_FILE_MAX_BYTES + 1)})
    with pytest.raises(SharedCAError, match="more than"):
        _check_stored({f"f{i}": b"k" for i in range(CA_FILES_MAX + 1)})
