"""Schema step 2 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0002"
down_revision = "0001"


def upgrade() -> None:
    apply(2)
