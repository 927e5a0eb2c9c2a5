"""QA: the Great Expectations row suite, batch health and annotator scorecards.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/qa.py``.
"""
