"""Schema step 5 (see `controlplane/store/migrations.py`)."""
from controlplane.store.migrations import apply

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    apply(5)
