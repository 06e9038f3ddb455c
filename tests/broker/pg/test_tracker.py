"""Request/answer matching (`broker.pg.tracker`), checked through the decoded statements."""
from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from broker.pg import protocol as p
from broker.pg.decode import SENT_PREFIX, decode_statement, statement_lines
from broker.pg.tracker import ANSWERED, QUICK, StatementTracker
from tests.broker.pg.wire import ROW, bind, cstr, execute, msg, ready


def test_simple_query_with_rows_and_error() -> None:
    clock = iter([10.0, 10.5, 20.0, 20.25]).__next__
    t = StatementTracker(clock=clock)
    t.from_client(msg(b"Q", cstr("select 1")))
    t.from_server(msg(b"T", b"...") + ROW + ROW + msg(b"C", cstr("SELECT 2")) + ready())
    t.from_client(msg(b"Q", cstr("insert into x values (1)")))
    t.from_server(msg(b"E", b"SERROR\x00C42501\x00Mpermission denied for table x\x00\x00") + ready())
    a, b = [decode_statement(r) for r in t.take_completed()]
    assert (a.text, a.rows, a.command_tag, a.protocol, a.duration_ms) == ("select 1", 2, "SELECT 2", "simple", 500.0)
    assert (b.error_sqlstate, b.error_message, b.rows) == ("42501", "permission denied for table x", None)
    assert t.in_flight == 0


def test_extended_protocol_pipeline_and_error_skips_to_sync() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("s1") + cstr("select $1::int") + b"\x00\x00") + bind("s1", "7")
                  + msg(b"D", b"P\x00") + execute() + msg(b"S"))
    t.from_client(bind("s1", "8") + execute() + bind("s1", "9") + execute() + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + msg(b"T", b"..") + ROW + msg(b"C", cstr("SELECT 1")) + ready())
    # The second batch: the first execute fails, the backend skips the rest up to Sync.
    t.from_server(msg(b"2") + msg(b"E", b"SERROR\x00C22012\x00Mdivision by zero\x00\x00") + ready())
    recs = [decode_statement(r) for r in t.take_completed()]
    assert [(r.text, r.parameters, r.rows, r.error_sqlstate, r.protocol) for r in recs] == [
        ("select $1::int", ["7"], 1, None, "extended"),
        ("select $1::int", ["8"], None, "22012", "extended"),
    ]
    assert t.in_flight == 0


def test_parse_error_recorded_and_client_messages_skipped_until_sync() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("") + cstr("selec oops") + b"\x00\x00"))
    t.from_server(msg(b"E", b"SERROR\x00C42601\x00Msyntax error\x00\x00"))
    t.from_client(bind("") + execute() + msg(b"S"))  # ignored by the backend until Sync
    t.from_server(ready())
    [r] = [decode_statement(x) for x in t.take_completed()]
    assert (r.text, r.error_sqlstate) == ("selec oops", "42601")
    assert t.in_flight == 0


def test_copy_in_and_out() -> None:
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("copy t from stdin")))
    t.from_server(msg(b"G", b"\x00\x00\x00"))
    t.from_client(msg(b"d", b"1\n2\n") + msg(b"c"))
    t.from_server(msg(b"C", cstr("COPY 2")) + ready())
    t.from_client(msg(b"Q", cstr("copy t to stdout")))
    t.from_server(msg(b"H", b"\x00\x00\x00") + msg(b"d", b"1\n") + msg(b"d", b"2\n") + msg(b"c")
                  + msg(b"C", cstr("COPY 2")) + ready())
    recs = [decode_statement(r) for r in t.take_completed()]
    assert [(r.text, r.protocol, r.rows) for r in recs] == [
        ("copy t from stdin", "copy", 2), ("copy t to stdout", "copy", 2)]


def test_portal_suspended_and_empty_query() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("") + cstr("select 1") + b"\x00\x00") + bind("", portal="c1")
                  + execute("c1") + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + ROW + msg(b"s") + ready())
    t.from_client(msg(b"P", cstr("") + cstr("") + b"\x00\x00") + bind("") + execute() + msg(b"S"))
    t.from_server(msg(b"1") + msg(b"2") + msg(b"I") + ready())
    a, b = [decode_statement(r) for r in t.take_completed()]
    assert (a.rows, a.command_tag) == (1, "SUSPENDED")
    assert (b.text, b.rows) == ("", None)


@given(st.binary(max_size=300))
@settings(max_examples=300, deadline=None)
def test_tracker_never_fails_on_random_server_bytes(data: bytes) -> None:
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("select 1")) + bind("x") + execute() + msg(b"S"))
    try:
        t.from_server(data)
    except p.ProtocolError:
        pass
    for r in t.take_completed():
        decode_statement(r)


def test_closed_statements_are_forgotten() -> None:
    t = StatementTracker()
    t.from_client(msg(b"P", cstr("s9") + cstr("select 9") + b"\x00\x00") + msg(b"S"))
    t.from_server(msg(b"1") + ready())
    assert b"s9" in t._statements
    t.from_client(msg(b"C", b"S" + cstr("s9")) + msg(b"S"))
    t.from_server(msg(b"3") + ready())
    assert b"s9" not in t._statements and t.in_flight == 0


def _split(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(stream)) for c in cuts})
    chunks, prev = [], 0
    for c in [*points, len(stream)]:
        chunks.append(stream[prev:c])
        prev = c
    return [c for c in chunks if c]


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=10),
       st.lists(st.integers(min_value=0, max_value=400), max_size=10))
@settings(max_examples=200, deadline=None)
def test_tracker_same_records_for_any_chunking(client_cuts: list[int], server_cuts: list[int]) -> None:
    client = (msg(b"Q", cstr("select 1")) + msg(b"P", cstr("s") + cstr("select $1") + b"\x00\x00")
              + bind("s", "5") + execute() + msg(b"S") + msg(b"Q", cstr("bad")))
    server = (msg(b"T", b"x" * 40) + ROW + msg(b"C", cstr("SELECT 1")) + ready()
              + msg(b"1") + msg(b"2") + ROW + ROW + msg(b"C", cstr("SELECT 2")) + ready()
              + msg(b"E", b"SERROR\x00C42601\x00Msyntax error at or near \"bad\"\x00\x00") + ready())

    def run(cc: list[bytes], sc: list[bytes]) -> list[tuple]:
        t = StatementTracker(clock=lambda: 1.0)
        for c in cc:
            t.from_client(c)
        for c in sc:
            t.from_server(c)
        return [(r.text, r.parameters, r.rows, r.command_tag, r.error_sqlstate)
                for r in map(decode_statement, t.take_completed())]

    expected = [("select 1", None, 1, "SELECT 1", None), ("select $1", ["5"], 2, "SELECT 2", None),
                ("bad", None, None, None, "42601")]
    assert run([client], [server]) == expected
    assert run(_split(client, client_cuts), _split(server, server_cuts)) == expected


def test_unanswered_statements_are_recorded_when_the_session_ends() -> None:
    t = StatementTracker()
    t.from_client(msg(b"Q", cstr("select pg_sleep(60)")))
    t.abandon("57P01", "cut")
    [r] = [decode_statement(x) for x in t.take_completed()]
    assert (r.text, r.error_sqlstate, r.error_message) == ("select pg_sleep(60)", "57P01", "cut")
    assert t.in_flight == 0


def sent_texts(t: StatementTracker) -> list[str]:
    return [json.loads(line)["text"] for line, _ in statement_lines(t.take_sent(), 0.0)]


def test_statements_sent_are_handed_over_once_before_their_answer() -> None:
    t = StatementTracker(clock=lambda: 5.0)
    t.from_client(msg(b"Q", cstr("insert into t select 1 from pg_sleep(4)")))  # the Query kept aside
    assert sent_texts(t) == [SENT_PREFIX + "insert into t select 1 from pg_sleep(4)"]
    assert sent_texts(t) == []  # once
    t.from_client(msg(b"Q", cstr("select 2")))  # queues the first (already handed over) behind nothing
    assert sent_texts(t) == [SENT_PREFIX + "select 2"]
    t.from_client(msg(b"P", cstr("") + cstr("insert into t values ($1)") + b"\x00\x00") + bind("", "42")
                  + execute() + msg(b"S"))
    assert sent_texts(t) == [SENT_PREFIX + 'insert into t values ($1) parameters: ["42"]']
    t.from_server(msg(b"C", cstr("INSERT 0 1")) + ready() + msg(b"T", b"..") + ROW + msg(b"C", cstr("SELECT 1"))
                  + ready())
    assert sent_texts(t) == [] and t.in_flight == 4  # Parse, Bind, Execute, Sync still wait
    t.from_server(msg(b"1") + msg(b"2") + msg(b"C", cstr("INSERT 0 1")) + ready())
    assert [decode_statement(r).text for r in t.take_completed()] == [
        "insert into t select 1 from pg_sleep(4)", "select 2", "insert into t values ($1)"]
    assert t.take_sent() == [] and t.in_flight == 0
    # The note sits at the statement's start in the recording.
    t.from_client(msg(b"Q", cstr("select 3")))
    [(line, text_bytes)] = statement_lines(t.take_sent(), 2.0)
    assert json.loads(line) == {"t": 3.0, "type": "note", "text": SENT_PREFIX + "select 3"} and text_bytes == 0


def test_query_kept_aside_keeps_its_place_among_pipelined_and_split_answers() -> None:
    # The hot path keeps a lone simple Query aside; anything else must queue it first.
    t = StatementTracker(clock=lambda: 1.0)
    t.from_client(msg(b"Q", cstr("update a set x = 1")))
    assert t.in_flight == 1
    t.from_client(msg(b"Q", cstr("select 2")))  # sent before the first is answered
    assert t.in_flight == 2
    t.from_server(msg(b"C", cstr("UPDATE 3")) + ready())
    t.from_server(msg(b"T", b"...") + ROW)  # the second answer, in two chunks
    t.from_server(msg(b"C", cstr("SELECT 1")) + ready())
    t.from_client(msg(b"Q", cstr("update b set y = 2")))
    t.from_server(msg(b"C", cstr("UPDATE 1")) + ready())  # the quick way
    t.from_client(msg(b"Q", cstr("select pg_sleep(9)")))
    t.abandon("57P01", "cut")  # the session ends with it unanswered
    raws = t.take_completed()
    assert [r[0] for r in raws] == [ANSWERED, ANSWERED, QUICK, ANSWERED]
    assert [(r.text, r.rows, r.command_tag, r.error_sqlstate) for r in map(decode_statement, raws)] == [
        ("update a set x = 1", 3, "UPDATE 3", None), ("select 2", 1, "SELECT 1", None),
        ("update b set y = 2", 1, "UPDATE 1", None), ("select pg_sleep(9)", None, None, "57P01")]
    assert t.in_flight == 0


_ANSWER_PARTS = {"T": msg(b"T", b"x" * 30), "D": ROW, "C": msg(b"C", cstr("SELECT 2")),
                 "SHOW": msg(b"C", cstr("SHOW")),  # a tag without a count: the rows are the DataRows
                 "Z": msg(b"Z", b"I"), "N": msg(b"N", b"SNOTICE\x00Mhi\x00\x00"), "bad": b"D\x00\x00\x00\x02"}


@given(st.lists(st.sampled_from(sorted(_ANSWER_PARTS)), max_size=8))
@example(["C", "Z"])
@example(["D", "D", "C", "Z"])
@example(["D", "D", "D", "SHOW", "Z"])
@example(["SHOW", "Z"])
@example(["D", "bad", "C", "Z"])
@example(["D", "N", "SHOW", "Z"])
@example(["D", "C", "Z", "Z"])
@example(["D", "T", "C", "Z"])
@settings(max_examples=300, deadline=None)
def test_a_lone_query_answered_in_one_chunk_is_recorded_as_when_split(parts: list[str]) -> None:
    # A small SELECT's whole answer in one chunk takes a quick way (RowDescription, DataRows,
    # CommandComplete, ReadyForQuery); anything else, or the same bytes split, the general walk.
    # Both must give the same records, and refuse the same malformed answers.
    answer = _ANSWER_PARTS["T"] + b"".join(_ANSWER_PARTS[k] for k in parts)

    def run(chunks: list[bytes]) -> tuple[list[tuple], bool]:
        t = StatementTracker(clock=lambda: 1.0)
        t.from_client(msg(b"Q", cstr("select x from t")))
        try:
            for c in chunks:
                t.from_server(c)
        except p.ProtocolError:
            return [], True
        return [(r.text, r.rows, r.command_tag) for r in map(decode_statement, t.take_completed())], False

    whole, split = run([answer]), run([answer[i:i + 1] for i in range(len(answer))])
    assert whole == split
    if parts in (["C", "Z"], ["D", "C", "Z"], ["D", "D", "C", "Z"]):
        assert whole == ([("select x from t", 2, "SELECT 2")], False)
    if parts == ["D", "D", "D", "SHOW", "Z"]:
        assert whole == ([("select x from t", 3, "SHOW")], False)
    if "bad" in parts:
        assert whole[1]


def test_a_small_select_answered_at_once_is_a_quick_statement() -> None:
    t = StatementTracker(clock=lambda: 1.0)
    t.from_client(msg(b"Q", cstr("select 1")))
    t.from_server(msg(b"T", b"x" * 30) + ROW + msg(b"C", cstr("SELECT 1")) + ready())
    [raw] = t.take_completed()
    assert raw[0] == QUICK and t.in_flight == 0
    r = decode_statement(raw)
    assert (r.text, r.rows, r.command_tag) == ("select 1", 1, "SELECT 1")


def test_feed_times_each_chunk_by_when_it_passed_and_stops_at_a_refused_one() -> None:
    # The broker keeps relayed chunks and feeds them in batches, with the times they passed.
    t = StatementTracker(clock=lambda: 99.0)
    refused = t.feed([(msg(b"Q", cstr("update a set x = 1")), True, 10.0),
                      (msg(b"C", cstr("UPDATE 2")) + ready(), False, 10.5),
                      (msg(b"Q", cstr("select 1")), True, 11.0),
                      (msg(b"T", b"x" * 30), False, 11.2),
                      (ROW + msg(b"C", cstr("SELECT 1")) + ready(), False, 11.7)])
    assert refused is None
    assert [
        (r.text, r.started_at, round(r.duration_ms, 6), r.rows) for r in map(decode_statement, t.take_completed())
    ] == [("update a set x = 1", 10.0, 500.0, 2), ("select 1", 11.0, 700.0, 1)]
    t.from_client(msg(b"Q", cstr("select 2")))  # one at a time again: the tracker's own clock
    t.abandon("57P01", "cut")
    assert [r.started_at for r in map(decode_statement, t.take_completed())] == [99.0]
    bad = b"Q\x00\x00\x00\x02"
    refused = t.feed([(msg(b"Q", cstr("select 3")), True, 12.0), (bad, True, 12.1),
                      (msg(b"Q", cstr("never walked")), True, 12.2)])
    assert refused is not None and refused[0] is True and "invalid message length" in refused[1].message
    server_bad = t.feed([(b"C\x00\x00\x00\x01", False, 13.0)])
    assert server_bad is not None and server_bad[0] is False
