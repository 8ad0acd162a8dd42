from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).parents[2] / "examples" / "bank" / "bank.py"


def test_bank_example_runs_and_tells_its_story(tmp_path: Path) -> None:
    log = tmp_path / "bank.db"
    out = subprocess.run(
        [sys.executable, str(EXAMPLE), str(log)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:5] == [
        "t-1 sent again: replayed=True",
        "t-3 refused: overdraft (balance 1300, amount 10000)",
        "alice: 3700",
        "bob: 1300",
        "notifications: ['t-1']",
    ]
    assert lines[5] == "command t-1" and "LargeTransferNoticed" in out.stdout
    # Run again on the same log: every command id is already recorded, nothing changes.
    again = subprocess.run(
        [sys.executable, str(EXAMPLE), str(log)], capture_output=True, text=True, timeout=60
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines()[2:5] == lines[2:5]
