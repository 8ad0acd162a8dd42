"""Plan and apply: move the views in the views file to what ``facta.toml`` declares.

``plan`` compares each declared view with the applied one and says what will happen: create (not
built yet), rebuild (its definition hash changed — a changed reference table changes the hash
of every view enriched from it), change in place (only the description differs), drop (built but
no longer declared), or nothing. ``apply`` does it and records what it applied; applying the
same project twice does nothing the second time.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Sequence
from typing import Literal

from facta.views.compile import CompiledView
from facta.views.engine import EngineSettings, ViewEngine, rebuild
from facta.views.store import ViewStore

Action = Literal["create", "rebuild", "change", "drop", "keep"]


@dataclasses.dataclass(frozen=True, slots=True)
class Step:
    """One thing ``apply`` will do to one view, and why."""

    view: str
    action: Action
    reason: str

    def __str__(self) -> str:
        return f"{self.action:<8} {self.view}: {self.reason}"


def plan(store: ViewStore, views: Sequence[CompiledView]) -> list[Step]:
    """What applying ``views`` would change, view by view (declared ones first, then drops)."""
    steps = []
    declared = set()
    for view in views:
        declared.add(view.name)
        current = store.current(view.name)
        if current is None:
            steps.append(Step(view.name, "create", "not built yet"))
        elif current.definition_hash != view.definition_hash:
            old, new = current.definition_hash[:12], view.definition_hash[:12]
            steps.append(Step(view.name, "rebuild", f"definition changed ({old} → {new})"))
        elif current.definition.get("description", "") != view.definition.description:
            steps.append(Step(view.name, "change", "description only"))
        else:
            steps.append(Step(view.name, "keep", "up to date"))
    for info in store.views():
        if info.view not in declared:
            steps.append(Step(info.view, "drop", "no longer declared"))
    return steps


def apply(
    log_path: str | os.PathLike[str],
    store: ViewStore,
    views: Sequence[CompiledView],
    *,
    settings: EngineSettings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[Step]:
    """Carry out :func:`plan`; return the steps that changed something."""
    by_name = {view.name: view for view in views}
    done = []
    for step in plan(store, views):
        if step.action == "keep":
            continue
        if step.action == "drop":
            store.drop(step.view)
        elif step.action == "change":
            definition = by_name[step.view].definition.model_dump(mode="json")
            store.set_definition(step.view, json.dumps(definition))
        else:
            report = None
            if progress is not None:
                name = step.view
                report = lambda done_, head, name=name: progress(name, done_, head)  # noqa: E731
            if step.action == "create":
                engine = ViewEngine(log_path, by_name[step.view], store, settings).open()
                engine.run()
                engine.close()
            else:
                rebuild(log_path, by_name[step.view], store, settings, progress=report).close()
        store.record_applied(step.view, step.action, by_name.get(step.view))
        done.append(step)
    return done
