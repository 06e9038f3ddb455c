"""Schema step 13: requests.start_us, scheduled windows (see `controlplane/store/windows.py`)."""
from controlplane.store.migrations import apply

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    apply(13)
