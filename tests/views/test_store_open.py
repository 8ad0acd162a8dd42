"""Stores opening a new views file at the same moment (facta serve's maintainer and readers)."""

from __future__ import annotations

import threading
from pathlib import Path

from facta.views.store import ViewStore


def _open_together(path: Path, count: int) -> tuple[list[ViewStore], list[BaseException]]:
    start = threading.Barrier(count)
    errors: list[BaseException] = []
    stores: list[ViewStore] = []

    def open_one() -> None:
        start.wait(5)
        try:
            stores.append(ViewStore(str(path)))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return stores, errors


def test_stores_opening_a_new_file_together_all_open(tmp_path: Path) -> None:
    for round_ in range(30):
        stores, errors = _open_together(tmp_path / f"views-{round_}.db", 4)
        for store in stores:
            store.close()
        assert errors == [], f"round {round_}: {errors!r}"
        assert len(stores) == 4
