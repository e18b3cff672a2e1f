"""Ingest: landing files -> raw.* (loader.py), validated by SQL generated from the contract (validation.py)."""
