"""The ``annotation-pipeline`` command: one module per command group, wired in ``cli.main``.

A thin shell over the stage packages, like ``defs/``: nothing imports it but the console script.
"""
