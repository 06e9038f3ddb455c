"""Schema step 10: uploaded recordings, their parts and seal keys (see `controlplane/store/recordings.py`)."""
from controlplane.store.migrations import apply

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    apply(10)
