"""Views: incremental, mergeable aggregates over the log (filter, enrich, extract, group, measure).

Define a view (in ``facta.toml`` or with :class:`ViewDefinition`), maintain it with a
:class:`ViewEngine` (or ``facta views run``), and query its committed state with the shapes in
:mod:`facta.views.shapes` over an :func:`open_snapshot`.
"""

from facta.views.compile import CompiledView, compile_view
from facta.views.definition import (
    Bucket,
    DefinitionError,
    MeasureSpec,
    Source,
    ViewDefinition,
    load_definition,
    load_views,
)
from facta.views.engine import (
    DefinitionChanged,
    EngineSettings,
    ViewEngine,
    ViewError,
    rebuild,
    state_at,
    state_known_at,
)
from facta.views.locks import ViewLocked
from facta.views.measures import Measure, make_measure
from facta.views.query import ViewNotFound, ViewSnapshot, ViewTimeout, open_snapshot
from facta.views.store import ViewStore, views_path

__all__ = [
    "Bucket",
    "CompiledView",
    "DefinitionChanged",
    "DefinitionError",
    "EngineSettings",
    "Measure",
    "MeasureSpec",
    "Source",
    "ViewDefinition",
    "ViewEngine",
    "ViewError",
    "ViewLocked",
    "ViewNotFound",
    "ViewSnapshot",
    "ViewStore",
    "ViewTimeout",
    "compile_view",
    "load_definition",
    "load_views",
    "make_measure",
    "open_snapshot",
    "rebuild",
    "state_at",
    "state_known_at",
    "views_path",
]
