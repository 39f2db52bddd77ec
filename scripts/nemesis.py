#!/usr/bin/env python3
"""The fault nemesis for J4 (standard library only): one long arrival-rate run on a small
cluster (Redis with AOF, 2 supervisors, 3 to 5 workers behind a delay proxy, j4 sink) while
random faults hit it, then the checks of docs/FAILURES.md at the receiving server. Called by
scripts/nemesis.sh, which installs what is missing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from j4conformance.nemesis import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
