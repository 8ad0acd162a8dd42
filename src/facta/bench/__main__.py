"""``python -m facta.bench``: the bench commands without the main CLI."""

from facta.bench.cli import bench_app

bench_app(prog_name="facta bench")
