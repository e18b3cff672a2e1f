"""Benchmarks: `meterhouse bench` (run.py) and the pandas reference it compares with."""
