"""Schema step 3 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    apply(3)
