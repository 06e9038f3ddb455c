"""Statement decoding: raw statements from the tracker -> recorder events and lines.

This is the recording process's work (`broker.pg.recordproc`), never the
relay's: the relay only collects raw statements (`broker.pg.tracker`, the
shapes are named there) and ships them in batches; here they become
`DbStatement` events, or the JSON lines those events would write, and a
statement sent but not answered yet becomes a note.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterator

from broker.pg.framing import F_FUNCTION, F_QUERY, U32
from broker.pg.protocol import (
    ProtocolError,
    parse_bind_parameters,
    parse_error_fields,
    parse_parse_types,
    rows_from_tag,
)
from broker.pg.tracker import (
    ANSWERED,
    QUICK,
    SENT,
    AnsweredStatement,
    QuickStatement,
    RawStatement,
    SentStatement,
)
from recorder.events import DbStatement, Note, json_line, statement_record

_I16 = struct.Struct("!h")
_unpack_u32 = U32.unpack_from

SENT_PREFIX = "statement sent upstream, not answered yet: "


def waits_for_answer(raws: list[RawStatement]) -> bool:
    """True when a batch ends with statements sent and not answered yet (the tracker hands
    those over last): the recording must reach the disk now."""
    return bool(raws) and raws[-1][0] == SENT


def statement_lines(raws: list[RawStatement], recording_start: float) -> Iterator[tuple[bytes, int]]:
    """Each raw statement as its recording line and the byte length of its text, for
    `RecordingWriter.write_statement_lines`: the line `decode_statement(raw).to_line()`
    gives, with `t` counted from `recording_start`.

    The usual statement (a simple query, one command, no error) skips the event
    object, and its command tag is decoded once per batch.
    """
    answers_seen: dict[bytes, tuple[str, int | None]] = {}  # a QuickStatement's answer -> (tag, rows it counts)
    tags_seen: dict[bytes, tuple[str, int | None]] = {}  # raw tag -> (tag, rows it counts)
    for raw in raws:
        shape = raw[0]
        if shape == SENT:
            yield json_line(sent_note(raw, recording_start).to_record()), 0  # type: ignore[arg-type]
            continue
        if shape == QUICK:
            _, query, answer, datarows, start, end = raw  # type: ignore[misc]
            known = answers_seen.get(answer)
            if known is None:
                known = answers_seen[answer] = _tag_and_rows(_answer_tag(answer))
            cut = query.find(b"\x00", 5)
            text_bytes = query[5:cut] if cut >= 0 else query[5:]
            protocol = "simple"
        else:
            answered: AnsweredStatement = raw  # type: ignore[assignment]
            if (answered[9] != F_QUERY or answered[8] is not None or answered[2] is None
                    or not isinstance(answered[7], bytes)):
                # Not a simple query answered by one command without an error: the general decoding.
                event = decode_statement(answered)
                event.t = max(0.0, answered[4] - recording_start)
                yield json_line(event.to_record()), len(event.text.encode("utf-8"))
                continue
            protocol, stmt, start, end, datarows, tags = (answered[1], answered[2], answered[4], answered[5],
                                                          answered[6], answered[7])
            known = tags_seen.get(tags)
            if known is None:
                known = tags_seen[tags] = _tag_and_rows(tags)
            cut = stmt.find(b"\x00")
            text_bytes = stmt[:cut] if cut >= 0 else stmt
        rows = known[1]
        if rows is None and datarows:  # a tag without a count: the rows are the DataRows seen
            rows = datarows
        t = start - recording_start
        duration = (end - start) * 1000.0
        record = statement_record(t if t > 0.0 else 0.0, protocol, text_bytes.decode("utf-8", "replace"), start,
                                  duration if duration > 0.0 else 0.0, None, rows, known[0], None, None)
        yield json_line(record), len(text_bytes)


def _answer_tag(answer: bytes) -> bytes:
    """The CommandComplete body that opens a QuickStatement's answer."""
    return answer[5:1 + _unpack_u32(answer, 1)[0]]


def _tag_and_rows(raw_tag: bytes) -> tuple[str, int | None]:
    tag = raw_tag.rstrip(b"\x00").decode("utf-8", "replace")
    return tag, rows_from_tag(tag)


def _answered(quick: QuickStatement) -> AnsweredStatement:
    """A QuickStatement as the AnsweredStatement it stands for."""
    _, query, answer, datarows, start, end = quick
    return (ANSWERED, "simple", query[5:], None, start, end, datarows, _answer_tag(answer), None, F_QUERY, None)


def sent_note(sent: SentStatement, recording_start: float) -> Note:
    """A SentStatement as the note that puts it on record before its answer."""
    _, protocol, stmt, bind, start, kind, described = sent
    event = decode_statement((ANSWERED, protocol, stmt, bind, start, start, 0, None, None, kind, described))
    text = SENT_PREFIX + event.text
    if event.parameters:
        text += " parameters: " + json.dumps(event.parameters, ensure_ascii=False)
    return Note(text, max(0.0, start - recording_start))


def decode_statement(raw: AnsweredStatement | QuickStatement) -> DbStatement:
    """Turn a raw finished statement into a recorder event."""
    if raw[0] == QUICK:
        raw = _answered(raw)  # type: ignore[arg-type]
    _, protocol, stmt, bind, start, end, datarows, tags, error, kind, described = raw  # type: ignore[misc]
    if stmt is None:
        text = "<unknown prepared statement>"
    elif kind == F_QUERY:
        end_of_text = stmt.find(b"\x00")
        text = (stmt[:end_of_text] if end_of_text >= 0 else stmt).decode("utf-8", "replace")
    elif kind == F_FUNCTION:
        oid = _unpack_u32(stmt, 0)[0] if len(stmt) >= 4 else 0
        text = f"<function call oid {oid}>"
    else:
        i = stmt.find(b"\x00")
        j = stmt.find(b"\x00", i + 1)
        text = stmt[i + 1: j if j >= 0 else len(stmt)].decode("utf-8", "replace")
    params = None
    if bind:
        types: list[int] | None = None
        try:
            if described:  # the server's ParameterDescription knows the types the client left open
                count = _I16.unpack_from(described, 0)[0]
                types = list(struct.unpack_from(f"!{count}I", described, 2))
            elif stmt is not None and kind != F_QUERY:
                types = parse_parse_types(stmt)
        except struct.error:
            types = None
        try:
            params = parse_bind_parameters(bind, types)
        except ProtocolError:
            params = ["<malformed bind>"]
    tag = None
    rows: int | None = None
    if isinstance(tags, bytes):  # one command (the usual case)
        tag, rows = _tag_and_rows(tags)
    elif tags:
        decoded = [_tag_and_rows(t) for t in tags]
        tag = decoded[-1][0]
        known = [c for _, c in decoded if c is not None]
        rows = sum(known) if known else None
    if rows is None and datarows:
        rows = datarows
    sqlstate = message = None
    if error is not None:
        fields = parse_error_fields(error)
        sqlstate = fields.get("sqlstate")
        message = fields.get("message")
    return DbStatement(text=text, started_at=start, duration_ms=max(0.0, (end - start) * 1000.0),
                       parameters=params, rows=rows, command_tag=tag, error_sqlstate=sqlstate,
                       error_message=message, protocol=protocol)
