"""The Jepsen-style bank test: real client processes, SIGKILLs, histories checked against the log.

See ``facta.testing.bank_chaos`` for the workload and ``facta.testing.bank_history`` for the
checks. The broken variants prove the checker is not vacuous: each must be caught in at least
9 of 10 seeded runs, for the reason its bug implies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from facta.testing.bank_chaos import run_bank_check


@pytest.mark.slow
def test_bank_under_sigkill_is_strictly_serializable_and_exactly_once(tmp_path: Path) -> None:
    # Four operations at once in each client: transactions chain on appends in flight, and
    # kills land in the middle of such chains.
    report = run_bank_check(tmp_path, seconds=40, clients=4, seed=2026, min_ok=500, tasks=4)
    assert report.violations == []
    # Non-vacuity: the run did enough of every kind of thing to mean something.
    assert report.kills_in_flight >= 10, report.summary()
    assert report.ok_transfers >= 500, report.summary()
    assert report.reads >= 50, report.summary()
    assert report.conflict_retries >= 1, report.summary()
    assert report.retried_indeterminate >= 1, report.summary()
    assert report.failed_transfers >= 1, report.summary()
    assert report.chained_appends >= 50, report.summary()


# Each broken variant, and the words its violations must contain.
BROKEN = {
    "separate-legs": ("sums to", "replays to a total", "applied"),
    "no-dedupe": ("applied 2 times", "applied 1 times, expected 0"),
    "unchecked": ("negative", "sums to"),
    "evolve-early": ("via cache",),
}


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(BROKEN))
def test_broken_variant_is_caught(tmp_path: Path, variant: str) -> None:
    caught = 0
    for seed in range(10):
        report = run_bank_check(
            tmp_path / str(seed),
            seconds=1.0,
            clients=3,
            seed=seed,
            variant=variant,
            timeouts=0.25,
            min_ok=40,
        )
        reasons = BROKEN[variant]
        if any(any(r in v for r in reasons) for v in report.violations):
            caught += 1
        assert report.ok_transfers >= 40, report.summary()  # the run did real work
    assert caught >= 9, f"{variant} caught in only {caught} of 10 runs"
