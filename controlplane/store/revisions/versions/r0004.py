"""Schema step 4 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    apply(4)
