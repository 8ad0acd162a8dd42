"""Stores opening a new views file at the same moment (facta serve's maintainer and readers)."""

from __future__ import annotations

import functools
from pathlib import Path

from facta.views.store import ViewStore
from tests.open_together import open_together


def test_stores_opening_a_new_file_together_all_open(tmp_path: Path) -> None:
    for round_ in range(30):
        path = tmp_path / f"views-{round_}.db"
        stores, errors = open_together(functools.partial(ViewStore, str(path)), 4)
        for store in stores:
            store.close()
        assert errors == [], f"round {round_}: {errors!r}"
        assert len(stores) == 4
