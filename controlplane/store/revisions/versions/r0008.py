"""Schema step 8: `ca_files` (see `controlplane/store/shared.py`)."""
from controlplane.store.migrations import apply

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    apply(8)
