"""How every bench line is measured and reported.

A line alternates baseline and facta runs (A B A B A B), each on a fresh temporary log, and its
ratio is the median of the per-pair ratios, so a burst of load on the shared machine moves one
pair, not the figure. Each line records where it ran: driver, SQLite version, the durability
read back from facta's writer connection, and the load average.
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import apsw


@dataclass
class Run:
    """One run of one side: its throughput and whatever else it observed."""

    value: float
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Pairs:
    baseline: list[Run]
    facta: list[Run]
    floor: list[Run] = field(default_factory=list)  # the schema floor, when a line has one

    def ratios(self) -> list[float]:
        return [f.value / b.value for b, f in zip(self.baseline, self.facta, strict=True)]

    def floor_ratios(self) -> list[float]:
        return [f.value / b.value for b, f in zip(self.baseline, self.floor, strict=True)]


def alternate(
    pairs: int,
    baseline: Callable[[], Run],
    facta: Callable[[], Run],
    floor: Callable[[], Run] | None = None,
) -> Pairs:
    """Run ``baseline`` then ``facta`` (then ``floor``, if given), ``pairs`` times."""
    result = Pairs([], [])
    for _ in range(pairs):
        result.baseline.append(baseline())
        result.facta.append(facta())
        if floor is not None:
            result.floor.append(floor())
    return result


@contextmanager
def fresh_path(name: str) -> Iterator[str]:
    """A path for a new SQLite file in a temporary directory removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="facta-bench-") as folder:
        yield os.path.join(folder, name)


def load_average() -> list[float] | None:
    getloadavg = getattr(os, "getloadavg", None)  # not on Windows
    return [round(x, 2) for x in getloadavg()] if getloadavg else None


def environment() -> dict[str, Any]:
    return {
        "driver": f"apsw {apsw.apsw_version()}",
        "sqlite_version": apsw.sqlite_lib_version(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }


def chosen(only: Sequence[str] | None, known: Sequence[str]) -> list[str]:
    """The benchmark lines ``--only`` names, in its order (all of ``known`` when it names
    none); a name not in ``known`` raises ``ValueError`` naming it and the known ones."""
    names = list(only) if only else list(known)
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ValueError(f"unknown benchmark {unknown[0]!r}, expected one of {', '.join(known)}")
    return names


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values`` by the nearest-rank method."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q * len(ordered) + 0.5)))
    return ordered[rank - 1]


def make_line(
    name: str,
    *,
    unit: str,
    baseline_name: str,
    goal: float | None,
    pairs: Pairs,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON line of one benchmark: medians of both sides and the median of pair ratios."""
    ratios = pairs.ratios()
    ratio = median(ratios)
    line: dict[str, Any] = {
        "name": name,
        "value": round(median([r.value for r in pairs.facta]), 1),
        "unit": unit,
        "baseline_name": baseline_name,
        "baseline_value": round(median([r.value for r in pairs.baseline]), 1),
        "ratio": round(ratio, 3),
        "goal": goal,
        "meets_goal": None if goal is None else ratio >= goal,
        "pair_ratios": [round(r, 3) for r in ratios],
    }
    if pairs.floor:
        # facta's statements on facta's schema with no Python work: the ratio's ceiling.
        floors = pairs.floor_ratios()
        line["schema_floor_ratio"] = round(median(floors), 3)
        line["schema_floor_pair_ratios"] = [round(r, 3) for r in floors]
    line.update(extra or {})
    line.update(environment())
    durability = pairs.facta[-1].extra.get("durability")
    if durability:
        line["synchronous"] = durability["synchronous"]
        line["journal_mode"] = durability["journal_mode"]
    line["loadavg"] = load_average()
    return line
