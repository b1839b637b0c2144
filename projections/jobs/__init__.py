"""Scheduled jobs and audits over the log and the read models.

``hold_expiry`` is a writer: it calls the ``expire_hold`` use case for holds the
transactions read model finds due; ``scheduled_jobs`` runs the monthly
snapshots, the daily reconciliation and the recurring runs of ``invario worker``.
The audits check the derived data: ``reconcile`` the read models against each
other and the write side; ``global_chain`` (tamper evidence, kept by its own
follower), ``verification``, ``stored_hash`` and ``integrity`` (the worker's
continuous verifier) the events and both chains; ``restore`` brings the derived
data back in line after a restore and proves it.
"""
