"""Benchmarks: each prints its figures and the ratio against its baseline, measured in one run."""
