"""A view maintainer run as a subprocess, so tests can SIGKILL it at chosen points.

Usage: python -m tests.views.maintainer LOG VIEW_JSON BATCH COMMIT_EVERY [die-in-commit:N]
Prints one line per committed checkpoint ("commit <position>") and "done <position>" at the end.
"""

from __future__ import annotations

import json
import os
import signal
import sys

from facta.views import EngineSettings, ViewEngine, ViewStore, compile_view, load_definition
from facta.views.store import views_path


def main(argv: list[str]) -> None:
    log_path, view_json, batch, commit_every = argv[:4]
    mode = argv[4] if len(argv) > 4 else ""
    table = json.loads(view_json)
    view = compile_view(load_definition(table.pop("name"), table))
    store = ViewStore(views_path(log_path))
    commits = 0

    def before_commit() -> None:
        nonlocal commits
        commits += 1
        if mode.startswith("die-in-commit:") and commits >= int(mode.split(":")[1]):
            # Cells and checkpoint are written but not committed: the worst moment to die.
            os.kill(os.getpid(), signal.SIGKILL)

    store.before_commit = before_commit
    settings = EngineSettings(batch_size=int(batch), commit_every_events=int(commit_every))
    engine = ViewEngine(log_path, view, store, settings).open()
    while engine.step():
        if engine.committed == engine.checkpoint:
            print(f"commit {engine.checkpoint}", flush=True)
    engine.run()
    print(f"done {engine.checkpoint}", flush=True)
    engine.close()


if __name__ == "__main__":
    main(sys.argv[1:])
