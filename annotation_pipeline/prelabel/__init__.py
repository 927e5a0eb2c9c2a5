"""Pre-labels and active learning: model-assisted labels and what to send for labeling.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/prelabel.py``.
"""
