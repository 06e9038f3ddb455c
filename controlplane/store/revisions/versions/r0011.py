"""Schema step 11: the notification outbox (see `controlplane/store/outbox.py`)."""
from controlplane.store.migrations import apply

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    apply(11)
