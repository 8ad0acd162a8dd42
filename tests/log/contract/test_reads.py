"""Reads (one stream both ways, the whole log with limit and filters) and typed events."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from facta.log import EventTypes, InvalidInput, NewEvent, RecordedEvent, StreamAppend

from .backends import ContractLog


def ev(kind: str = "Happened", **data: object) -> NewEvent:
    return NewEvent(type=kind, data=dict(data))


@pytest.fixture
def filled(log: ContractLog) -> ContractLog:
    """Positions 1..12 over streams acct-1 (6), acct-2 (3), user-1 (3), with two types."""
    for i in range(6):
        log.append_many_sync(
            [
                StreamAppend("acct-1", (ev("Deposited", n=i),)),
                StreamAppend("acct-2" if i % 2 else "user-1", (ev("Noted", n=i),)),
            ]
        )
    return log


def test_read_stream_forward_and_backward_with_limit(filled: ContractLog) -> None:
    log = filled
    forward = log.read_stream_sync("acct-1")
    assert [e.version for e in forward] == [1, 2, 3, 4, 5, 6]
    assert [e.data["n"] for e in forward] == [0, 1, 2, 3, 4, 5]
    assert all(e.stream == "acct-1" and e.type == "Deposited" for e in forward)
    assert [e.version for e in log.read_stream_sync("acct-1", from_version=3, limit=2)] == [3, 4]
    assert [e.version for e in log.read_stream_sync("acct-1", from_version=5, backward=True)] == [
        5,
        4,
        3,
        2,
        1,
    ]
    last_two = log.read_stream_sync("acct-1", from_version=6, backward=True, limit=2)
    assert [e.version for e in last_two] == [6, 5]
    assert log.read_stream_sync("acct-1", from_version=7) == []
    assert log.read_stream_sync("nobody") == []
    assert [e.position for e in forward] == sorted(e.position for e in forward)


def test_read_all_after_a_position_with_limit_and_filters(filled: ContractLog) -> None:
    log = filled
    assert [e.position for e in log.read_all_sync()] == list(range(1, 13))
    assert [e.position for e in log.read_all_sync(after=4, limit=3)] == [5, 6, 7]
    assert log.read_all_sync(after=12) == []
    noted = log.read_all_sync(types=["Noted"])
    assert [e.position for e in noted] == [2, 4, 6, 8, 10, 12]
    assert [e.position for e in log.read_all_sync(types=["Noted", "Deposited"], limit=5)] == [
        1,
        2,
        3,
        4,
        5,
    ]
    acct = log.read_all_sync(stream_prefix="acct-")
    assert {e.stream for e in acct} == {"acct-1", "acct-2"} and len(acct) == 9
    both = log.read_all_sync(after=3, types=["Noted"], stream_prefix="acct-", limit=2)
    assert [(e.position, e.stream) for e in both] == [(4, "acct-2"), (8, "acct-2")]
    assert log.read_all_sync(types=["Unknown"]) == []
    with pytest.raises(InvalidInput, match="limit"):
        log.read_all_sync(limit=0)


def test_paging_read_all_visits_every_event_once(filled: ContractLog) -> None:
    log = filled
    seen: list[int] = []
    after = 0
    pages = 0
    while page := log.read_all_sync(after=after, limit=5):
        pages += 1
        seen.extend(e.position for e in page)
        after = page[-1].position
    assert pages == 3 and seen == list(range(1, 13))


def test_async_reads_match_sync_reads(filled: ContractLog) -> None:
    log = filled

    async def main() -> tuple[list[RecordedEvent], list[RecordedEvent], int, int]:
        return (
            await log.read_stream("acct-2", from_version=3, backward=True),
            await log.read_all(after=10),
            await log.head(),
            await log.stream_version("user-1"),
        )

    stream, tail, head, version = asyncio.run(main())
    assert [e.version for e in stream] == [3, 2, 1]
    assert [e.position for e in tail] == [11, 12]
    assert (head, version) == (12, 3)


types = EventTypes()


@types.register("bank.AccountOpened", version=3)
class AccountOpened(msgspec.Struct, frozen=True):
    owner: str
    currency: str
    overdraft: int


@types.register("bank.MoneyDeposited", version=2)
class Deposit(msgspec.Struct, frozen=True):
    amount: int


types.upcaster("bank.AccountOpened", 1)(lambda data: {**data, "currency": "EUR"})
types.upcaster("bank.AccountOpened", 2)(lambda data: {**data, "overdraft": 0})
# A rename is a step like any other: (legacy.Deposit, 1) -> (bank.MoneyDeposited, 2).
types.upcaster("legacy.Deposit", 1, to_name="bank.MoneyDeposited")(
    lambda data: {"amount": data["cents"] // 100}
)


def test_typed_events_round_trip_with_upcasters(log: ContractLog) -> None:
    log.append_sync(
        "acct-1",
        [
            NewEvent(type="bank.AccountOpened", data={"owner": "ada"}, schema_version=1),
            NewEvent(
                type="bank.AccountOpened",
                data={"owner": "bob", "currency": "GBP"},
                schema_version=2,
            ),
            types.new_event(AccountOpened("cy", "USD", 50)),
            NewEvent(type="legacy.Deposit", data={"cents": 1250}),
            types.new_event(Deposit(7)),
        ],
    )
    stored = log.read_stream_sync("acct-1")
    assert [(e.type, e.schema_version) for e in stored] == [
        ("bank.AccountOpened", 1),
        ("bank.AccountOpened", 2),
        ("bank.AccountOpened", 3),
        ("legacy.Deposit", 1),
        ("bank.MoneyDeposited", 2),
    ], "the registered name and version are stored, never the class name"
    assert [types.decode(e) for e in stored] == [
        AccountOpened("ada", "EUR", 0),
        AccountOpened("bob", "GBP", 0),
        AccountOpened("cy", "USD", 50),
        Deposit(12),
        Deposit(7),
    ]


def test_unknown_types_decode_as_plain_events_and_never_raise(log: ContractLog) -> None:
    log.append_sync(
        "s",
        [
            NewEvent(type="SomethingElse", data={"odd": [1, {"x": None}]}, schema_version=9),
            NewEvent(type="bank.AccountOpened", data={"owner": "ada"}, schema_version=7),
        ],
    )
    unknown, future_version = log.read_stream_sync("s")
    assert types.decode(unknown) == unknown
    assert types.decode(future_version) == future_version  # a version no class is registered at
