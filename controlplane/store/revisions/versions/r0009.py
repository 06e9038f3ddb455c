"""Schema step 9: `people` and `signin_nonces` (see `controlplane/store/people.py`)."""
from controlplane.store.migrations import apply

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    apply(9)
