"""``as_of(position=P)``: a view exactly as it was at checkpoint P.

The maintainer records a history snapshot at the first commit past every ``history_every``
log positions (``EngineSettings.history_every``, default 1,000,000). Snapshots cost nothing
when taken: the views file keeps, copy-on-write, the old version of every cell overwritten
after a snapshot (see :mod:`facta.views.store`). The state at P is the nearest snapshot at or
before P, loaded into an in-memory store, then the log from there to P folded by an engine
like any other — the same code that built the live view — so it is the state the view had
when its checkpoint was P, down to the reject counts.
"""

from __future__ import annotations

import os

from facta.views.engine import EngineSettings, ViewEngine
from facta.views.query import ViewNotFound, _compiled
from facta.views.store import ViewStore


def state_at(
    log_path: str | os.PathLike[str],
    store: ViewStore,
    view: str,
    position: int,
    settings: EngineSettings | None = None,
) -> ViewStore:
    """An in-memory store holding ``view`` exactly as it was at checkpoint ``position``."""
    current = store.current(view)
    if current is None:
        raise ViewNotFound(view)
    if not 0 <= position <= current.checkpoint:
        raise ValueError(
            f"view {view!r}: as_of(position={position}) needs a position from 0 to the "
            f"view's checkpoint {current.checkpoint}"
        )
    compiled = _compiled(current)
    memory = ViewStore(":memory:")
    generation = memory.create_generation(view, current.definition_hash, current.definition)
    memory.activate(view, generation)
    earlier = [s for s in store.snapshots(view, current.generation) if s.checkpoint <= position]
    if earlier:
        base = earlier[-1]
        with store.reading():
            cells = list(store.state_at(view, current.generation, base.checkpoint))
        memory.commit(
            view,
            generation,
            cells,
            checkpoint=base.checkpoint,
            batches=base.batches,
            rejected=base.rejected,
        )
    with ViewEngine(log_path, compiled, memory, settings).open() as engine:
        engine.run(until=position)
    return memory
