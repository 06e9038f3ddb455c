"""Statement decoding (`broker.pg.decode`): the recording process's lines are the decoded events' lines."""
from __future__ import annotations

from broker.pg.decode import decode_statement, statement_lines
from broker.pg.tracker import STARTED, StatementTracker
from tests.broker.pg.wire import ROW, bind, cstr, execute, msg, ready


def test_statement_lines_are_the_lines_of_decoded_statements() -> None:
    # The recording process writes `statement_lines`; replay reads them as DbStatements.
    # Every shape of statement must come out as `decode_statement(raw).to_line()` would.
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("select 1")))
    t.from_server(msg(b"T", b"...") + ROW + ROW + msg(b"C", cstr("SELECT 2")) + ready())
    t.from_client(msg(b"Q", cstr("begin")))
    t.from_server(msg(b"C", cstr("BEGIN")) + ready())
    t.from_client(msg(b"Q", cstr("fetch 2 from c")))  # a tag without a count: the DataRows count
    t.from_server(ROW + ROW + msg(b"C", cstr("FETCH")) + ready())
    t.from_client(msg(b"Q", cstr("select 'é\"\\\n'; update x set a = 1")))  # two commands, escapes
    t.from_server(ROW + msg(b"C", cstr("SELECT 1")) + msg(b"C", cstr("UPDATE 3")) + ready())
    t.from_client(msg(b"Q", cstr("insert into x values (1)")))
    t.from_server(msg(b"E", b"SERROR\x00C42501\x00Mpermission denied\x00\x00") + ready())
    t.from_client(msg(b"Q", cstr("copy t from stdin")))
    t.from_server(msg(b"G", b"\x00\x00\x00"))
    t.from_client(msg(b"d", b"1\n") + msg(b"c"))
    t.from_server(msg(b"C", cstr("COPY 1")) + ready())
    t.from_client(msg(b"P", cstr("s1") + cstr("select $1::int") + b"\x00\x00") + bind("s1", "7") + execute()
                  + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + ROW + msg(b"C", cstr("SELECT 1")) + ready())
    raws = t.take_completed()
    assert len(raws) == 7
    start = raws[0][STARTED] - 2.5
    lines = list(statement_lines(raws, start))
    for raw, (line, text_len) in zip(raws, lines, strict=True):
        event = decode_statement(raw)
        event.t = max(0.0, event.started_at - start)
        assert line == event.to_line().encode("utf-8")
        assert text_len == len(event.text.encode("utf-8"))
