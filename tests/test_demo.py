from __future__ import annotations

import json
from pathlib import Path

import pytest

from facta import demo
from facta.log import SqliteLog


def test_demo_imports_the_reference_tables_and_shows_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    # The flights table is the same importer on a bigger file, covered in tests/cli.
    monkeypatch.setattr(demo, "TABLES", demo.TABLES[:2])
    monkeypatch.chdir(tmp_path)
    demo.main()
    out = capfd.readouterr().out
    summaries = [json.loads(line) for line in out.splitlines() if line.startswith('{"file"')]
    assert [(s["records"], s["events"], s["rejected"]) for s in summaries] == [
        (16, 16, 0),
        (1458, 1458, 0),
    ]
    assert "$ facta stats --log demo/facta.db" in out
    assert '"name":"United Air Lines Inc."' in out
    with SqliteLog(tmp_path / "demo" / "facta.db") as log:
        assert log.head_sync() == 16 + 1458
        (airport,) = log.read_stream_sync("airport-JFK")
        assert airport.data["name"] == "John F Kennedy Intl"
        assert isinstance(airport.data["lat"], float) and isinstance(airport.data["alt"], int)
