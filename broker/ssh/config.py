"""The SSH broker's configuration, checked when built."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from broker.lockstate import DEFAULT_STALE_AFTER
from broker.refusals import RefusalLimits
from jitgate.endpoints import parse_servers
from recorder.limits import DEFAULT_MAX_RECORDING_BYTES, check_max_recording_bytes

_HOSTPORT = re.compile(r"^(\[[^\]]+\]|[^:\s]+):(\d{1,5})$")


def parse_listen(value: str) -> tuple[str, int]:
    """`HOST:PORT` (`[::1]:2222` for IPv6) -> (host, port); ValueError with a plain message."""
    m = _HOSTPORT.match(value.strip())
    if not m:
        raise ValueError(f"`{value}` is not HOST:PORT")
    host, port = m.group(1).strip("[]"), int(m.group(2))
    if port > 65535:
        raise ValueError(f"port {port} in `{value}` is out of range")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
                raise ValueError(f"`{host}` is not a host name or address") from None
    return host, port


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker listens, who it is, where the control plane is, where it keeps its state.

    `data_dir` holds the broker's persistent host key (`ssh_host_ed25519_key`,
    encrypted, with its `.pub`), the key passphrase (unless given by the
    environment, see ca.keystore) and the recordings.
    """

    listen_host: str
    listen_port: int
    identity_dir: Path
    server: str
    data_dir: Path
    activity_interval: float = 30.0  # seconds between ReportActivity rounds
    trust_refresh_interval: float = 60.0
    login_grace_time: float = 60.0
    # Terminal keystrokes are not recorded (what the terminal echoed is, in the output): a
    # password typed at a prompt that does not echo must not end up in a recording.
    record_keystrokes: bool = False
    refusals: RefusalLimits = field(default_factory=RefusalLimits)  # refused logins: audit and tarpit
    # Seconds the broker may go without learning the lock state before it refuses new sessions.
    lock_stale_after: float = DEFAULT_STALE_AFTER
    # Bytes one session's recording may take (recorder.limits says why 1 GiB); past it the
    # session is cut with a line saying so, so one user cannot fill the recordings disk.
    max_recording_bytes: int = DEFAULT_MAX_RECORDING_BYTES

    def __post_init__(self) -> None:
        if not 0 <= self.listen_port <= 65535:
            raise ValueError(f"listen port {self.listen_port} is out of range")
        ident = Path(self.identity_dir)
        missing = [n for n in ("ca.pem", "cert.pem", "key.pem") if not (ident / n).is_file()]
        if missing:
            raise ValueError(
                f"identity directory `{ident}` lacks {', '.join(missing)} "
                "(make one with `jitgate admin issue-identity NAME --out DIR`; "
                "NAME must be listed under `brokers:` in the server config)"
            )
        parse_servers(self.server)  # one control plane or several (a,b): jitgate.endpoints
        if self.activity_interval <= 0 or self.trust_refresh_interval <= 0:
            raise ValueError("intervals must be positive")
        check_max_recording_bytes(self.max_recording_bytes, "--max-recording-bytes")

    @classmethod
    def build(cls, listen: str, identity_dir: str | Path, server: str, data_dir: str | Path,
              **kwargs: Any) -> BrokerConfig:
        host, port = parse_listen(listen)
        return cls(listen_host=host, listen_port=port, identity_dir=Path(identity_dir).expanduser(),
                   server=server, data_dir=Path(data_dir).expanduser(), **kwargs)

    @property
    def host_key_path(self) -> Path:
        return self.data_dir / "ssh_host_ed25519_key"

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"
