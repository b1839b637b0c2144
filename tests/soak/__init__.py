"""A seeded fault-injection soak: ``make soak`` (``python -m tests.soak``), see docs/soak.md.

Real ``invario serve`` and ``invario worker`` processes on a PostgreSQL database of
their own, reached through a test-owned TCP proxy; many clients write (keyed
transfers, batches, holds, reversals, deliberate overdrafts, replayed keys) while a
schedule drawn from the seed kills and restarts the processes and breaks the
network. At the end the invariants are checked and reported; the exit status is 1
when any failed, 2 when the soak could not run.
"""
