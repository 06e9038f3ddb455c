"""The PostgreSQL wire broker: TLS, token login, upstream login as the approved role, relay, record, cut.

Connecting (any libpq-style client, psycopg, JDBC):

    user      = ROLE@RESOURCE            e.g. readonly@orders-db (the last `@` separates them)
    password  = the token from IssueDatabaseToken (`jitgate db-connect RESOURCE` prints it all)
    sslmode   = verify-full, sslrootcert = the jitgate CA (IssueDatabaseToken's ca_pem)
    dbname    = the resource's `database:` (the broker uses it whatever the client names)

`jitgate psql RESOURCE [--role R]` does all of this and runs psql. Refusals are
FATAL ErrorResponses: 28P01 (bad token), 28000 (no grant for this resource/role,
plaintext when TLS is required, malformed user name, credentials this broker does
not allow, an upstream asking for a cleartext password it may not have), 57P03
(control plane unreachable), 58030 (the session cannot be recorded). At the
deadline, or on revocation, the session ends with FATAL 57P01 saying why; a
WARNING notice comes `grace_period` before the deadline.

Fail closed while relaying: a recording that cannot be written cuts the session
(58030, end reason `recording_failed`); one past `--max-recording-bytes` too (54000,
`recording_limit`); a client that breaks the protocol (a bad message length) gets
an ErrorResponse, a note in the recording and the end reason `protocol_error`.
On record: the startup parameters sent upstream (a note before the first
statement), each statement as a note once it is sent and still unanswered at
the recorder's next pull (so a crash cannot hide what ran), then as a statement
with its answer.

Modules:
- `protocol`: sans-I/O protocol 3.0 (startup, typed messages, builders, parsers).
- `framing`: header-only framing of one direction of the stream (`Walker`), the type bytes.
- `tracker`: request/answer matching into raw statements, their shapes named (the hot path).
- `decode`: raw statements -> recorder events and lines (in the recording process only).
- `pipe`: one side of a connection as an asyncio protocol; TLS on memory BIOs.
- `upstream`: upstream login (SCRAM-SHA-256, md5, cleartext, trust; optional TLS).
- `credentials`: `credentials:` references (env:NAME, file:PATH) -> upstream login, within
  what the broker's config allows (`CredentialSource`).
- `config`: `PgBrokerConfig`, the `ROLE@RESOURCE` user-name syntax.
- `recording`, `recordproc`: statements recorded through `recorder/` in a child process.
- `login`: TLS, the token check, the upstream login, cancel keys (Teleport's proxy.go).
- `session`: one relayed session: greeting, relay, recording, grace warning, cut (engine.go).
- `server`: `PgBroker`: listener, recording process, over `broker.runtime` (shared with SSH).
"""
