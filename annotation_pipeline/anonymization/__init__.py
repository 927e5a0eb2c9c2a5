"""Anonymization: personal data leaves the items before anything crosses to a vendor.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/anonymization.py``.
"""
