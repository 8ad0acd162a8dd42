"""Benchmarks of facta against baselines measured in the same run (``facta bench``)."""

from facta.bench.cli import bench_app

__all__ = ["bench_app"]
