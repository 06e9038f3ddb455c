"""The control plane server's configuration: flags > config file > environment > defaults.

A config file (`--config server.yaml`) is a mapping of the `ServerConfig` field
names below; unknown keys are refused so a typo fails at start, not later.

```yaml
listen: 127.0.0.1:7443
policies: /etc/jitgate/policies.yaml
admins: [sam]          # extra admins besides the policy group `admins`
brokers: [broker]      # identities allowed to call BrokerService
server_names: [jitgate.internal]
ssh_broker_address: broker.internal:2222
pg_broker_address: broker.internal:6432
recommend_coverage: 0.85  # share of grants a recommended duration should cover
store: postgresql://jitgate@db.internal:5432/jitgate  # default: SQLite in the data directory
metrics: 127.0.0.1:9464   # Prometheus /metrics (controlplane/metrics.py); off when unset
login_listen: 127.0.0.1:7444   # sign-ins (`jitgate login`), only with `oidc:` (controlplane/signin/config.py)
oidc: {issuer: https://login.example.com/, client_id: jitgate}
```
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from jitgate.errors import JitgateError

DATA_DIR_ENV = "JITGATE_DATA_DIR"
DEFAULT_LISTEN = "127.0.0.1:7443"
DEFAULT_BROKERS = ("broker",)


class ConfigError(JitgateError, ValueError):
    """A configuration problem, as one plain sentence."""

    code = "config.invalid"


def default_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$JITGATE_DATA_DIR`, else `~/.jitgate`."""
    env = os.environ if environ is None else environ
    value = env.get(DATA_DIR_ENV)
    return Path(value).expanduser() if value else Path.home() / ".jitgate"


def split_listen(listen: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:7443`) -> (host, port); raises ConfigError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"listen address `{listen}` must be host:port, e.g. {DEFAULT_LISTEN}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ServerConfig:
    """Everything `jitgate server` needs; validates itself when built."""

    data_dir: Path
    policies: Path
    listen: str = DEFAULT_LISTEN
    admins: frozenset[str] = frozenset()
    brokers: frozenset[str] = frozenset(DEFAULT_BROKERS)
    server_names: tuple[str, ...] = ()
    server_ips: tuple[str, ...] = ()
    ssh_broker_address: str = ""
    pg_broker_address: str = ""
    policy_poll_seconds: float = 1.0
    watch_queue_size: int = 10000
    workers: int = 8
    recommender: bool = True  # false: no duration model (every request must give a duration)
    recommend_coverage: float = 0.85  # share of grants a recommended duration should cover (calibrated)
    inline_core: bool = True  # quick core calls on the event loop thread; false: all in `workers` threads
    policy_authors: str = "policy-authors"  # policy group whose members (besides admins) may call ValidatePolicy
    validate_cpu_seconds: int = 30  # CPU limit of one ValidatePolicy's sandboxed check (policy.sandbox)
    validate_memory_mb: int = 1024  # memory limit of one ValidatePolicy's sandboxed check
    store: str = ""  # a store URL (postgresql://... shared by several planes); "": SQLite in data_dir
    metrics: str = ""  # HOST:PORT of the Prometheus endpoint (controlplane/metrics.py); "" = none
    oidc: Any = None  # sign-in through OpenID Connect: an OidcConfig once built (None: off)
    login_listen: str = ""  # the sign-in listener; "" with `oidc`: the mTLS port + 1 (0 stays 0)
    # Uploaded recordings (controlplane/recordings.py): `s3://bucket/prefix`, or a directory
    # ("" = DATA_DIR/recording-store, the embedded default). S3 credentials: boto3's usual chain.
    recordings: str = ""
    recordings_endpoint: str = ""  # S3 endpoint URL (else AWS_ENDPOINT_URL, else AWS)
    recordings_region: str = ""
    recordings_retention_days: int = 0  # 0: keep forever; else delete older ones not on legal hold
    auditors_group: str = "auditors"  # policy group that may read every recording (besides admins)
    notify: dict[str, Any] | None = None  # `notify:` (controlplane/notify/config.py); None: notifications off

    def __post_init__(self) -> None:
        split_listen(self.listen)
        if not str(self.policies):
            raise ConfigError("no policies: pass --policies PATH or set `policies:` in the config file")
        if self.policy_poll_seconds <= 0:
            raise ConfigError("policy_poll_seconds must be positive")
        if self.watch_queue_size < 10:
            raise ConfigError("watch_queue_size must be at least 10")
        if not 1 <= self.workers <= 256:
            raise ConfigError("workers must be between 1 and 256")
        if not 1 <= self.validate_cpu_seconds <= 600:
            raise ConfigError("validate_cpu_seconds must be between 1 and 600")
        if not 64 <= self.validate_memory_mb <= 65536:
            raise ConfigError("validate_memory_mb must be between 64 and 65536")
        # Below 0.5 an offer is a guess; above 0.99 only the policy maximum covers (recommend.calibrate).
        if isinstance(self.recommend_coverage, bool) or not isinstance(self.recommend_coverage, (int, float)) \
                or not 0.5 <= self.recommend_coverage <= 0.99:
            raise ConfigError(f"recommend_coverage must be a number from 0.5 to 0.99, got {self.recommend_coverage!r}")
        if self.store:
            from controlplane.scaleout.storeurl import normalize

            if not isinstance(self.store, str):
                raise ConfigError("`store` must be a URL: postgresql://user@host:5432/db or sqlite:///path")
            object.__setattr__(self, "store", normalize(self.store))  # raises a ConfigError-coded message
        if self.metrics:
            from jitgate.metrics import parse_metrics_address

            try:
                parse_metrics_address(self.metrics)
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        if self.oidc is not None:
            from controlplane.signin.config import OidcConfig

            object.__setattr__(self, "oidc", OidcConfig.from_mapping(self.oidc))
            if not self.login_listen:
                object.__setattr__(self, "login_listen", f"{self.listen.rpartition(':')[0]}:"
                                   f"{self.port + 1 if self.port else 0}")
            split_listen(self.login_listen)
        if not 0 <= self.recordings_retention_days <= 36600:
            raise ConfigError("recordings_retention_days must be between 0 (keep) and 36600")
        if self.recordings.startswith("s3://") and not self.recordings[5:].strip("/"):
            raise ConfigError("recordings: `s3://` needs a bucket: s3://BUCKET[/PREFIX]")
        if self.notify is not None:
            from controlplane.notify.config import parse_notify
            parse_notify(self.notify)  # a bad channel or a missing secret fails at start
        overlap = self.admins & self.brokers
        if overlap:
            raise ConfigError(f"`{sorted(overlap)[0]}` cannot be both an admin and a broker")

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]


_LIST_FIELDS = {"admins", "brokers", "server_names", "server_ips"}


def _as_names(key: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"`{key}` must be a list of names")
    return tuple(value)


def read_config_file(path: Path) -> dict[str, Any]:
    """The mapping in a server config file, keys checked against ServerConfig."""
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise ConfigError(f"cannot read config `{path}`: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    known = {f.name for f in fields(ServerConfig)}
    for key in data:
        if key not in known:
            raise ConfigError(f"{path}: unknown key `{key}` (known: {', '.join(sorted(known))})")
    return data


def build_config(
    *,
    data_dir: Path | None = None,
    policies: Path | None = None,
    listen: str | None = None,
    config_file: Path | None = None,
    store: str | None = None,
    metrics: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServerConfig:
    """Merge command-line values over the config file over the environment and defaults."""
    values: dict[str, Any] = read_config_file(config_file) if config_file else {}
    for key in _LIST_FIELDS & values.keys():
        values[key] = _as_names(key, values[key])
    for key in ("admins", "brokers"):
        if key in values:
            values[key] = frozenset(values[key])
    if data_dir is not None:
        values["data_dir"] = data_dir
    if policies is not None:
        values["policies"] = policies
    if listen is not None:
        values["listen"] = listen
    if store:
        values["store"] = store
    if metrics is not None:
        values["metrics"] = metrics
    root = Path(values.get("data_dir") or default_data_dir(environ)).expanduser()
    values["data_dir"] = root
    if "policies" not in values:
        if (root / "policies.yaml").exists():
            values["policies"] = root / "policies.yaml"
        else:
            raise ConfigError("no policies: pass --policies PATH or set `policies:` in the config file")
    values["policies"] = Path(values["policies"]).expanduser()
    try:
        return ServerConfig(**values)
    except TypeError as e:
        raise ConfigError(f"bad configuration: {e}") from None
