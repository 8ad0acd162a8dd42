"""``python -m facta.demo``: see :mod:`facta.demo`."""

from facta.demo import main

main()
