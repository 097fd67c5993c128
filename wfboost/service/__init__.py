"""The shell every long-running wfboost process runs in: signals, its tasks, and the health/metrics app."""
