"""The winner: its bundle ``winner.pt`` (bundle), ``Predictor`` and ``predict`` (predict), and its
pictures (pictures).
"""
