"""The winner: its bundle ``winner.pt`` (bundle), ``Predictor`` (predict), ``hpsearch predict`` on
image files (predict_files), and its pictures (pictures).
"""
