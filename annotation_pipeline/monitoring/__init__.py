"""Monitoring: production drift signals and relabel campaigns.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/monitoring.py``.
"""
