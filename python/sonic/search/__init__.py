"""Capacity search: the highest load an engine serves within its SLOs (``sonic search``).

``slo`` parses objectives and judges one run against them (with a bootstrap over requests),
``plan`` decides the next load from the probes so far, ``runner`` runs and persists the probes,
``plot`` draws the SLO metrics against load with the capacity marked.
"""
