"""Entry point of the notification sender process (`python -m controlplane.notify.child SPEC`);
see process.py. A module of its own so that running it does not re-import the package's modules."""
from __future__ import annotations

import sys

from controlplane.notify.process import main

if __name__ == "__main__":
    sys.exit(main(sys.argv))
