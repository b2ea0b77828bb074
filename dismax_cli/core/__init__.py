"""The engine: heads, losses, FPR mixing, scores, metrics, calibration, ensembles.

Pure torch / numpy / scipy / scikit-learn. No I/O, no printing, and no import of typer, rich or
yaml (an architecture test enforces it).
"""
