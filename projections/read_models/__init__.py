"""The read models: the tables the followers keep for queries, and the queries over them.

Each module here owns tables (``accounts``, ``statements``, ``transactions``,
``monthly_snapshots``, ``recurring_transactions``, the tenant directory) and the
projection that writes them from events; ``queries`` and ``recurring_queries``
read them; ``encoding`` and ``bulk`` are what their writes share. Following the
log (tracking positions, batches, the runner) lives in ``projections.following``;
jobs and audits over these tables in ``projections.jobs``.
"""
