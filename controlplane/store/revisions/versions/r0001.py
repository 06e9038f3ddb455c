"""Schema step 1 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0001"
down_revision = None


def upgrade() -> None:
    apply(1)
