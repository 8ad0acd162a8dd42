from __future__ import annotations

import facta.entities
import facta.testing


def test_public_names_are_explicit_and_importable() -> None:
    for package in (facta.entities, facta.testing):
        names = package.__all__
        assert names == sorted(names)
        assert all(hasattr(package, name) for name in names)
    assert {
        "Runtime",
        "Transaction",
        "DomainError",
        "Processor",
        "ProcessorRunner",
        "trace",
    } <= set(facta.entities.__all__)
