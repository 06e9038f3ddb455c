"""Schema step 7 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    apply(7)
