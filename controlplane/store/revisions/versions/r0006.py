"""Schema step 6 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    apply(6)
