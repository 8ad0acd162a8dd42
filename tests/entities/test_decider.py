from __future__ import annotations

import pytest

from facta.entities import decide_and_evolve, spec_of
from facta.log import InvalidInput, NewEvent
from facta.testing import FakeClock, given
from tests.entities.kinds import (
    Account,
    Add,
    Balance,
    Counter,
    Deposit,
    Deposited,
    InsufficientFunds,
    Withdraw,
    Withdrawn,
)


def test_given_when_then_accepts_and_evolves() -> None:
    given(Account, Deposited(10)).when(Withdraw(4)).then(Withdrawn(4)).then_state(Balance(6))


def test_given_when_then_refusal_carries_the_domain_error() -> None:
    error = given(Account, Deposited(3)).when(Withdraw(5)).then_raises(InsufficientFunds)
    assert error.args == (3, 5)


def test_then_reports_expected_and_found_events() -> None:
    with pytest.raises(AssertionError, match=r"expected events \[Withdrawn\(amount=9\)\]"):
        given(Account, Deposited(10)).when(Withdraw(4)).then(Withdrawn(9))
    with pytest.raises(AssertionError, match="refused with InsufficientFunds"):
        given(Account).when(Withdraw(1)).then(Withdrawn(1))
    with pytest.raises(AssertionError, match="expected InsufficientFunds, but it decided"):
        given(Account).when(Deposit(1)).then_raises(InsufficientFunds)


def test_plain_decider_of_module_functions() -> None:
    state, events = decide_and_evolve(Counter, 2, Add(3))
    assert state == 5
    assert events == [NewEvent(type="Added", data={"n": 3})]


def test_spec_names_what_is_missing() -> None:
    class NotADecider:
        initial = 0

    with pytest.raises(InvalidInput, match="missing decide, evolve"):
        spec_of(NotADecider)


def test_stream_names_follow_the_kind_name() -> None:
    assert spec_of(Account).stream("a1") == "account-a1"


def test_fake_clock_only_moves_forward() -> None:
    clock = FakeClock()
    start = clock.now()
    clock.advance(2.5)
    assert (clock.now() - start).total_seconds() == 2.5
    assert clock.monotonic() == 2.5
    with pytest.raises(ValueError, match="negative"):
        clock.advance(-1)
