"""The run folder: the trial store (store), its one-writer lock (lock), the ranking files (exports),
halving's continuation states (states), retraining checkpoints (checkpoints), atomic writes (atomic),
and a run's settings and dataset read back (run_info).
"""
