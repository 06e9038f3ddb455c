"""Several control planes on one PostgreSQL store, all active (`jitgate server --store postgresql://...`).

One module per concern: `storeurl` (which store a server opens), `shared_ca` (the CAs every
plane serves, kept in the store), `tailer` (changes made on other planes, heard through
LISTEN/NOTIFY with the audit sequence as the cursor, published to this plane's watchers and
sweeper), `lease` (one sweeper at a time: a PostgreSQL advisory lock), `health` (gRPC health
NOT_SERVING while the store cannot be reached). On SQLite none of this runs except `health`:
one process owns the data directory.
"""
