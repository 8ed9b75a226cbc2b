"""The search space: ``SearchSpace`` and ``ParamGenerator`` (search_space), its distributions, the checks
of a space against the model kinds and the data (checks), and its translation to Optuna (optuna_bridge).
"""
