"""Benchmarks of indexing throughput and search latency: ``python -m bench [--quick]``.

Nothing here is imported by the app; results go to stdout (JSON) and docs/BENCHMARKS.md.
"""
