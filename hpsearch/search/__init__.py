"""The run loop: ``run_search`` (run), the evaluate seam a strategy works through (evaluator), Ctrl-C
and a lost cluster (interrupt).
"""
