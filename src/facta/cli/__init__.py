"""The ``facta`` command line. ``main`` is the console script; ``run`` returns the exit status."""

from facta.cli.app import app, exit_code_of, main, run

__all__ = ["app", "exit_code_of", "main", "run"]
