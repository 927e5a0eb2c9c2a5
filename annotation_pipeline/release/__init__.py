"""Release: DVC-versioned datasets, their provenance and quality report.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/release.py``.
"""
