"""The cyclic collector is paused for a block and restored as it was, even when the block fails;
after live commits, survivors are frozen and cycles are still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from facta.collector import LiveSettler, collector_paused


def test_collector_paused_then_restored_as_it_was() -> None:
    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="boom"), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


class Node:
    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> Node:
    """Two nodes referring to each other: reference counting alone never frees them."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return a


def test_live_settler_freezes_survivors_and_still_collects_cycles() -> None:
    frozen_before = gc.get_freeze_count()
    settler = LiveSettler()
    try:
        young = weakref.ref(cycle())
        kept = [cycle() for _ in range(100)]
        settler.settle()
        assert young() is None  # a cycle that died young is collected at once
        assert gc.get_freeze_count() >= frozen_before + 2 * len(kept)  # survivors frozen
        assert settler.full_collections == 0
        # A cycle that becomes garbage after it was frozen waits for the periodic full walk.
        old = weakref.ref(kept[0])
        kept.clear()
        settler.settle()
        assert old() is not None
        settler.full_every = 0.0
        settler.settle()
        assert old() is None
        assert settler.full_collections == 1
    finally:
        gc.unfreeze()
