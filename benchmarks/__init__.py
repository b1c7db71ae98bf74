"""Benchmarks for ispring_async: `python -m benchmarks` (see benchmarks/README.md)."""
