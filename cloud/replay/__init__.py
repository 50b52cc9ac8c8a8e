"""Replay: run a candidate pipeline version over stored crops and compare, before activating.

- :mod:`~lensflow.cloud.replay.compare` — per-node counts, confusion table, examples.
- :mod:`~lensflow.cloud.replay.job` — one job: crops from the store, the candidate, the report.
- :mod:`~lensflow.cloud.replay.runner` — jobs in a spawned child process, outside the API.
"""
