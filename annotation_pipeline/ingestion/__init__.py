"""Ingestion: a day's landing folder becomes raw items named by the sha256 of their bytes.

Pure logic: no Dagster import (a test holds this); the wiring is ``defs/ingestion.py``.
"""
