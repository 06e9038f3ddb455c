"""Schema step 12: locks (see `controlplane/store/locks.py`)."""
from controlplane.store.migrations import apply

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    apply(12)
