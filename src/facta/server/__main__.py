"""``python -m facta.server``: the same as ``facta serve``."""

from facta.server.cli import main

main()
