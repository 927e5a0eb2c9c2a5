"""Dagster wiring only: one module per lifecycle stage, each exposing ``defs``."""
