"""PostgreSQL protocol 3.0, sans-I/O: bytes in, events out; messages to bytes.

Nothing here touches a socket. Three pieces:

- `StartupReader`: the untyped first message of a connection (SSLRequest,
  GSSENCRequest, CancelRequest, StartupMessage).
- `MessageReader`: typed messages (`type byte, int32 length, body`) for the
  login phase, where every message is looked at.
- builders (`error_response`, `notice_response`, `auth_request`, ...) and
  parsers (`parse_error_fields`, `parse_bind_parameters`, ...) of single messages.

The relay's framing (look at headers only, copy nothing) is in `framing.py` and `tracker.py`.
"""
from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

PROTOCOL_3_0 = 196608
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102

# PostgreSQL itself refuses startup packets above 10000 bytes (MAX_STARTUP_PACKET_LENGTH).
MAX_STARTUP_LENGTH = 10000
# The login phase never needs big messages (a SCRAM exchange is < 1 KiB).
MAX_LOGIN_MESSAGE = 64 * 1024

_I32 = struct.Struct("!i")
_U32 = struct.Struct("!I")
_HDR = struct.Struct("!cI")
_I16 = struct.Struct("!h")

# Authentication request codes ('R' messages).
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12


class ProtocolError(Exception):
    """The peer broke the protocol (malformed, oversized or unexpected message).

    `sqlstate` is what the broker tells a client about it (08P01 protocol_violation,
    54000 program_limit_exceeded for oversized messages).
    """

    def __init__(self, message: str, sqlstate: str = "08P01") -> None:
        super().__init__(message)
        self.message = message
        self.sqlstate = sqlstate


# ---------------------------------------------------------------- startup phase


@dataclass(frozen=True, slots=True)
class SSLRequest:
    """The client asks for TLS; answer b"S" (then handshake) or b"N"."""


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    """The client asks for GSSAPI encryption; jitgate answers b"N"."""


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """Cancel the query running on backend `pid` holding `secret`."""

    pid: int
    secret: int


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """Protocol version and parameters (`user`, `database`, `application_name`, ...)."""

    version: int
    params: dict[str, str] = field(default_factory=dict)


StartupEvent = SSLRequest | GSSENCRequest | CancelRequest | StartupMessage


class StartupReader:
    """Reads the one untyped message that opens a connection (or follows a TLS handshake)."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def pending(self) -> int:
        """Bytes received and not yet consumed (checked after SSLRequest: must be 0)."""
        return len(self._buf)

    def take_rest(self) -> bytes:
        """Bytes after the consumed message (handed on to the next reader)."""
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def next_event(self) -> StartupEvent | None:
        """The next startup message, None when more bytes are needed; ProtocolError if malformed."""
        if len(self._buf) < 4:
            return None
        (length,) = _I32.unpack_from(self._buf, 0)
        if length < 8 or length > MAX_STARTUP_LENGTH:
            raise ProtocolError(f"invalid startup packet length {length}")
        if len(self._buf) < length:
            return None
        packet = bytes(self._buf[4:length])
        del self._buf[:length]
        return parse_startup(packet)


def parse_startup(packet: bytes) -> StartupEvent:
    """A startup packet without its length word -> its event."""
    (code,) = _I32.unpack_from(packet, 0)
    if code == SSL_REQUEST_CODE:
        if len(packet) != 4:
            raise ProtocolError("invalid SSLRequest length")
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE:
        if len(packet) != 4:
            raise ProtocolError("invalid GSSENCRequest length")
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE:
        if len(packet) != 12:
            raise ProtocolError("invalid CancelRequest length")
        pid, secret = struct.unpack_from("!iI", packet, 4)
        return CancelRequest(pid, secret)
    if code >> 16 != 3:
        raise ProtocolError(f"unsupported frontend protocol {code >> 16}.{code & 0xFFFF}: "
                            "server supports 3.0", "0A000")
    params = _parse_params(packet[4:])
    if "user" not in params or not params["user"]:
        raise ProtocolError("no PostgreSQL user name specified in startup packet", "28000")
    return StartupMessage(code, params)


def _parse_params(data: bytes) -> dict[str, str]:
    if not data.endswith(b"\x00"):
        raise ProtocolError("startup packet is not NUL-terminated")
    parts = data[:-1].split(b"\x00")
    if parts and parts[-1] == b"":
        parts.pop()
    if len(parts) % 2:
        raise ProtocolError("startup packet has a parameter without a value")
    try:
        items = [p.decode("utf-8") for p in parts]
    except UnicodeDecodeError:
        raise ProtocolError("startup packet is not valid UTF-8") from None
    params: dict[str, str] = {}
    for i in range(0, len(items), 2):
        if not items[i]:
            raise ProtocolError("startup packet has an empty parameter name")
        params[items[i]] = items[i + 1]
    return params


# ---------------------------------------------------------------- typed messages


@dataclass(frozen=True, slots=True)
class Message:
    """One typed message: its type byte (e.g. b"Q") and body (without the length word)."""

    type: bytes
    body: bytes


class MessageReader:
    """Frames typed messages from a byte stream (login phase: every message is looked at)."""

    def __init__(self, max_length: int = MAX_LOGIN_MESSAGE) -> None:
        self._buf = bytearray()
        self._max = max_length

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    def take_rest(self) -> bytes:
        rest = bytes(self._buf)
        self._buf.clear()
        return rest

    def next_message(self) -> Message | None:
        """The next whole message, None when more bytes are needed; ProtocolError if malformed."""
        if len(self._buf) < 5:
            return None
        kind, length = _HDR.unpack_from(self._buf, 0)
        if length < 4:
            raise ProtocolError(f"invalid message length {length}")
        if length > self._max:
            raise ProtocolError(f"message of {length} bytes is over the limit of {self._max}", "54000")
        if len(self._buf) < length + 1:
            return None
        body = bytes(self._buf[5 : length + 1])
        del self._buf[: length + 1]
        return Message(kind, body)


def message(kind: bytes, body: bytes = b"") -> bytes:
    """Frame one typed message."""
    return kind + _U32.pack(len(body) + 4) + body


def startup_message(params: dict[str, str], version: int = PROTOCOL_3_0) -> bytes:
    body = _I32.pack(version) + b"".join(
        k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in params.items()
    ) + b"\x00"
    return _I32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    return _I32.pack(8) + _I32.pack(SSL_REQUEST_CODE)


def cancel_request(pid: int, secret: int) -> bytes:
    return _I32.pack(16) + _I32.pack(CANCEL_REQUEST_CODE) + struct.pack("!iI", pid, secret)


# ---------------------------------------------------------------- backend messages the broker writes

# ErrorResponse / NoticeResponse field codes.
_FIELD_NAMES = {
    b"S": "severity", b"V": "severity_nonlocalized", b"C": "sqlstate", b"M": "message",
    b"D": "detail", b"H": "hint", b"P": "position", b"W": "where",
}


def _fields(severity: str, sqlstate: str, text: str, detail: str | None, hint: str | None) -> bytes:
    out = [b"S" + severity.encode() + b"\x00", b"V" + severity.encode() + b"\x00",
           b"C" + sqlstate.encode() + b"\x00", b"M" + _clean(text) + b"\x00"]
    if detail:
        out.append(b"D" + _clean(detail) + b"\x00")
    if hint:
        out.append(b"H" + _clean(hint) + b"\x00")
    return b"".join(out) + b"\x00"


def _clean(text: str) -> bytes:
    # A NUL would end the field early; strings come from us or from the control plane.
    return text.replace("\x00", " ").encode("utf-8")


def error_response(sqlstate: str, text: str, severity: str = "FATAL",
                   detail: str | None = None, hint: str | None = None) -> bytes:
    """An ErrorResponse ('E') message."""
    return message(b"E", _fields(severity, sqlstate, text, detail, hint))


def notice_response(text: str, sqlstate: str = "01000", severity: str = "WARNING",
                    detail: str | None = None, hint: str | None = None) -> bytes:
    """A NoticeResponse ('N') message; WARNING severity so psql shows it."""
    return message(b"N", _fields(severity, sqlstate, text, detail, hint))


def auth_request(code: int, data: bytes = b"") -> bytes:
    """An Authentication* ('R') message."""
    return message(b"R", _I32.pack(code) + data)


def negotiate_protocol_version(newest_minor: int, unsupported: list[str]) -> bytes:
    """NegotiateProtocolVersion ('v'): the newest 3.x minor version served, and options not understood."""
    body = _I32.pack(newest_minor) + _I32.pack(len(unsupported)) + b"".join(
        o.encode() + b"\x00" for o in unsupported)
    return message(b"v", body)


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(b"K", struct.pack("!iI", pid, secret))


def ready_for_query(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def password_message(data: bytes) -> bytes:
    return message(b"p", data)


def terminate() -> bytes:
    return message(b"X")


# ---------------------------------------------------------------- parsers of single message bodies


def parse_error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse / NoticeResponse body -> {"severity", "sqlstate", "message", ...}."""
    out: dict[str, str] = {}
    pos = 0
    n = len(body)
    while pos < n and body[pos] != 0:
        code = body[pos : pos + 1]
        end = body.find(b"\x00", pos + 1)
        if end < 0:
            break
        name = _FIELD_NAMES.get(code)
        if name:
            out[name] = body[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return out


def parse_backend_key_data(body: bytes) -> tuple[int, int]:
    if len(body) != 8:
        raise ProtocolError("invalid BackendKeyData")
    pid, secret = struct.unpack("!iI", body)
    return pid, secret


def parse_auth(body: bytes) -> tuple[int, bytes]:
    """Authentication message body -> (code, rest)."""
    if len(body) < 4:
        raise ProtocolError("invalid authentication message")
    (code,) = _I32.unpack_from(body, 0)
    return code, body[4:]


def parse_sasl_mechanisms(data: bytes) -> list[str]:
    return [m.decode("ascii", "replace") for m in data.split(b"\x00") if m]


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return password_message(mechanism.encode() + b"\x00" + _I32.pack(len(data)) + data)


def cstring(body: bytes | memoryview, pos: int) -> tuple[bytes, int]:
    """The NUL-terminated string at `pos` and the position after its NUL."""
    raw = bytes(body)
    end = raw.find(b"\x00", pos)
    if end < 0:
        raise ProtocolError("string is not NUL-terminated")
    return raw[pos:end], end + 1


def _numeric_text(v: bytes) -> str:
    """numeric_send's format -> numeric's text: base-10000 digits, weight, sign, display scale."""
    ndigits, weight, sign, dscale = struct.unpack_from("!hhHH", v)
    special = {0xC000: "NaN", 0xD000: "Infinity", 0xF000: "-Infinity"}.get(sign)
    if special is not None:
        return special
    if sign not in (0, 0x4000) or ndigits < 0 or len(v) != 8 + 2 * ndigits:
        raise ValueError("malformed numeric")
    if ndigits > 64 or abs(weight) > 256 or dscale > 1000:  # big-int work a client could make huge
        raise ValueError("numeric too long to show")
    n = 0
    for digit in struct.unpack_from(f"!{ndigits}h", v, 8):
        if not 0 <= digit < 10000:
            raise ValueError("malformed numeric")
        n = n * 10000 + digit
    shift = 4 * (weight - ndigits + 1) + dscale  # n * 10**shift is the value scaled by 10**dscale
    n = n * 10 ** shift if shift >= 0 else n // 10 ** -shift
    text = str(n).rjust(dscale + 1, "0")
    if dscale:
        text = text[:-dscale] + "." + text[-dscale:]
    return "-" + text if sign == 0x4000 and n else text


_PG_EPOCH = dt.datetime(2000, 1, 1)
_INFINITE_TIME = {2**63 - 1: "infinity", -2**63: "-infinity"}


def _timestamp_text(v: bytes, zone: str = "") -> str:
    """timestamp(tz)_send's microseconds since 2000-01-01 -> ISO text (timestamptz in UTC, "+00")."""
    (us,) = struct.unpack("!q", v)
    if us in _INFINITE_TIME:
        return _INFINITE_TIME[us]
    t = _PG_EPOCH + dt.timedelta(microseconds=us)
    fraction = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return t.replace(microsecond=0).isoformat(" ") + fraction + zone


def _date_text(v: bytes) -> str:
    (days,) = struct.unpack("!i", v)
    if days in (2**31 - 1, -2**31):
        return "infinity" if days > 0 else "-infinity"
    return (_PG_EPOCH + dt.timedelta(days=days)).date().isoformat()


def _jsonb_text(v: bytes) -> str:
    if v[:1] != b"\x01":
        raise ValueError("unknown jsonb version")
    return v[1:].decode("utf-8", "replace")


_BINARY_DECODERS: dict[int, Callable[[bytes], str]] = {
    16: lambda v: "true" if v == b"\x01" else "false",  # bool
    20: lambda v: str(struct.unpack("!q", v)[0]),  # int8
    21: lambda v: str(struct.unpack("!h", v)[0]),  # int2
    23: lambda v: str(struct.unpack("!i", v)[0]),  # int4
    26: lambda v: str(struct.unpack("!I", v)[0]),  # oid
    700: lambda v: repr(struct.unpack("!f", v)[0]),  # float4
    701: lambda v: repr(struct.unpack("!d", v)[0]),  # float8
    25: lambda v: v.decode("utf-8", "replace"),  # text
    1043: lambda v: v.decode("utf-8", "replace"),  # varchar
    19: lambda v: v.decode("utf-8", "replace"),  # name
    2950: lambda v: str(uuid.UUID(bytes=v)),  # uuid
    1042: lambda v: v.decode("utf-8", "replace"),  # bpchar
    114: lambda v: v.decode("utf-8", "replace"),  # json
    3802: _jsonb_text,  # jsonb
    1700: _numeric_text,  # numeric (JDBC sends BigDecimal so)
    1082: _date_text,  # date
    1114: _timestamp_text,  # timestamp
    1184: lambda v: _timestamp_text(v, "+00"),  # timestamptz, shown in UTC
}


def parse_parse_types(body: bytes) -> list[int]:
    """Parse ('P') body -> the parameter type OIDs the client declared (0: unspecified)."""
    _, pos = cstring(body, 0)
    _, pos = cstring(body, pos)
    try:
        (n,) = _I16.unpack_from(body, pos)
        return list(struct.unpack_from(f"!{n}I", body, pos + 2)) if n > 0 else []
    except struct.error:
        return []


def _binary_text(value: bytes, oid: int) -> str:
    decode = _BINARY_DECODERS.get(oid)
    if decode is not None:
        try:
            return decode(value)
        except (struct.error, ValueError, OverflowError):
            pass
    return "\\x" + value.hex()


def parse_bind_parameters(body: bytes, types: list[int] | None = None) -> list[str | None]:
    """Bind ('B') body -> its parameters as text (None for NULL).

    Binary parameters of common types (`types`: OIDs from the Parse) are shown as
    text; any other binary value as "\\x" hex.
    """
    types = types or []
    _, pos = cstring(body, 0)
    _, pos = cstring(body, pos)
    try:
        (nfmt,) = _I16.unpack_from(body, pos)
        pos += 2
        formats = list(struct.unpack_from(f"!{nfmt}h", body, pos)) if nfmt > 0 else []
        pos += 2 * max(nfmt, 0)
        (nparams,) = _I16.unpack_from(body, pos)
        pos += 2
        out: list[str | None] = []
        for i in range(max(nparams, 0)):
            (size,) = _I32.unpack_from(body, pos)
            pos += 4
            if size < 0:
                out.append(None)
                continue
            value = body[pos : pos + size]
            if len(value) != size:
                raise ProtocolError("truncated Bind parameter")
            pos += size
            fmt = formats[0] if len(formats) == 1 else (formats[i] if i < len(formats) else 0)
            if fmt == 1:
                out.append(_binary_text(bytes(value), types[i] if i < len(types) else 0))
            else:
                out.append(bytes(value).decode("utf-8", "replace"))
        return out
    except struct.error:
        raise ProtocolError("malformed Bind message") from None


def rows_from_tag(tag: str) -> int | None:
    """Rows affected/returned from a CommandComplete tag ("INSERT 0 3" -> 3, "SELECT 5" -> 5)."""
    last = tag.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() and " " in tag else None
