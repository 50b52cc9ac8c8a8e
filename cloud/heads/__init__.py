"""Heads trained from reviewed labels: gather, split, train, gate, store, propose a version.

- :mod:`~lensflow.cloud.heads.training` — split by crop id, fit, evaluate, gate (no database).
"""
