"""Vendor exchange: the handoff of a batch, the parsing of what comes back, and the intake.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/vendor.py``.
"""
