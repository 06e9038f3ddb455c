"""The PostgreSQL wire broker: TLS, token login, upstream login as the approved role, relay, record, cut.

- `broker.pg.protocol`: sans-I/O protocol 3.0 (startup, typed messages, builders, parsers).
- `broker.pg.tracker`: the relay's header-only framing and statement matching.
- `broker.pg.upstream`: upstream login (SCRAM-SHA-256, md5, cleartext, trust).
- `broker.pg.credentials`: `credentials:` references (env:NAME, file:PATH) -> upstream login.
- `broker.pg.config`: `PgBrokerConfig`, the `ROLE@RESOURCE` user-name syntax.
- `broker.pg.server`: `PgBroker`, the asyncio server.
"""
