#!/usr/bin/env python3
"""Randomized conformance harness for J4 (standard library only).

Each case draws, from a seeded RNG, a run definition (model, stages, tick, shards, lease
TTL) and a cluster shape (worker and supervisor processes, or `j4 run --workers N`), runs
it end to end against `j4 sink --access-log` and a private redis-server, and checks the
invariants of docs/FAILURES.md and docs/PROTOCOL.md at the receiving server:

  arrival-rate  the server counts exactly ceil(A(T)) (computed here with exact fractions and
                cross-checked with the summary's target and the published plan); started ==
                target, dropped == 0; every iteration number arrives once, in its own tick
                and shard; per tick granted == F(n+1) - F(n) == started + dropped (+ lost,
                which must be 0: no worker is killed) and the server's count == started;
  vus           the distinct VUs in flight at the server never exceed the curve's target
                (max of V over the tick and its neighbours); no VU is in flight from two
                workers at overlapping times; every VU wanted through a tick and its
                neighbours sends in it; summary started == server count;
  both          no (tick, shard) is sent by two workers.

A case whose only defect is iterations dropped as `late` (or `maxInFlight`) while the
machine's CPU was saturated is run again (--retries); if every attempt ends so, it is
reported as inconclusive, not as a failure of J4.

Case k of seed S has the seed printed with it; `--seed <case seed> --cases 1` reruns exactly
that case. Called by scripts/conformance.sh, which installs what is missing.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from j4conformance.harness import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
