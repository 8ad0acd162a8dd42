"""Given/when/then for deciders, with no log: past events, a command, expected events or error.

>>> from facta.testing import given
>>> given(Account, Opened("ada")).when(Deposit(10)).then(Deposited(10))  # doctest: +SKIP
>>> given(Account).when(Withdraw(5)).then_raises(NotOpened)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from facta.entities.decider import KindSpec, spec_of
from facta.entities.errors import DomainError


class Scenario:
    """A decider's state after some past events; ``when`` runs a command against it."""

    def __init__(self, spec: KindSpec, history: tuple[Any, ...]) -> None:
        self.spec = spec
        self.history = history
        self.state = spec.fold(spec.make_initial(), history)

    def when(self, command: Any) -> Outcome:
        try:
            events = self.spec.run_decide(command, self.state)
        except DomainError as error:
            return Outcome(self, command, None, error)
        return Outcome(self, command, events, None)


class Outcome:
    """What one command did: the events it decided, or the domain error it raised."""

    def __init__(
        self, scenario: Scenario, command: Any, events: list[Any] | None, error: DomainError | None
    ) -> None:
        self.scenario = scenario
        self.command = command
        self.events = events
        self.error = error

    def then(self, *expected: Any) -> Outcome:
        """Assert the command decided exactly ``expected`` (in order)."""
        if self.error is not None:
            raise AssertionError(
                f"{self.command!r}: expected events {list(expected)!r}, but it was refused "
                f"with {type(self.error).__name__}: {self.error}"
            )
        if list(expected) != self.events:
            raise AssertionError(
                f"{self.command!r}: expected events {list(expected)!r}, found {self.events!r}"
            )
        return self

    def then_raises(self, error_type: type[DomainError], match: str | None = None) -> DomainError:
        """Assert the command was refused with ``error_type`` (its message containing ``match``)."""
        if self.error is None:
            raise AssertionError(
                f"{self.command!r}: expected {error_type.__name__}, but it decided {self.events!r}"
            )
        if not isinstance(self.error, error_type):
            raise AssertionError(
                f"{self.command!r}: expected {error_type.__name__}, found "
                f"{type(self.error).__name__}: {self.error}"
            )
        if match is not None and match not in str(self.error):
            raise AssertionError(
                f"{self.command!r}: expected a message containing {match!r}, found {self.error}"
            )
        return self.error

    def then_state(self, expected: Any) -> Outcome:
        """Assert the state after evolving the decided events equals ``expected``."""
        if self.events is None:
            raise AssertionError(f"{self.command!r} was refused: {self.error}")
        state = self.scenario.spec.fold(self.scenario.state, self.events)
        if state != expected:
            raise AssertionError(f"{self.command!r}: expected state {expected!r}, found {state!r}")
        return self


def given(kind: Any, *history: Any) -> Scenario:
    """Start a scenario: the decider ``kind`` after the events ``history`` (none: initial)."""
    return Scenario(spec_of(kind), history)
