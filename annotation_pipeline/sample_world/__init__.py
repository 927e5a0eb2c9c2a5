"""The sample world: generated sample data, a simulated vendor workforce and serving team.

The demo, the local vendor resource and the tests use it to play the outside world; the
stages themselves never import it. Pure logic: no Dagster import (a test holds this).
"""
