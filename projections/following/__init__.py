"""Following the notification log: the machinery that moves every projection forward.

``follower`` applies batches of the log and moves tracking positions in the same
transaction; ``registry`` names every projection and the tables it owns;
``runner`` runs the followers a process is given (``interfaces.bootstrap`` builds them);
``rebuild``, ``status``, ``lag_metrics`` and ``schema`` are how operators and
metrics see and reset them; ``consistency`` reads several read models as of one
position. The read models themselves live in ``projections.read_models``.
"""
