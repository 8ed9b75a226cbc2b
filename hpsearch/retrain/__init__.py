"""Retraining the best configs: top-k retraining and the winner's choice (top), one config's job (job),
the ``compare`` command (compare), and retraining progress (progress).
"""
