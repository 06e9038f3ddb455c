"""Alembic's script directory for the store's schema: one revision file per schema step.

Each revision calls `migrations.apply(N)`, which runs step N of `migrations.MIGRATIONS` and
records N in `schema_version` (so a jitgate from before Alembic still refuses a newer schema).
Alembic is driven in-process by `controlplane/store/schema.py`; there is no alembic.ini or env.py.
"""
