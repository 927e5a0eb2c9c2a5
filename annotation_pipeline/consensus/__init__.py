"""Consensus: aggregators of class answers, box and polygon merging, agreement metrics.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/consensus.py``.
"""
