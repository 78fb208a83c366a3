"""Review of B2's ``UnknownFields``: the work it does, and its scope's end.

Before: noting the unknown fields of a record walked every key of it and built each one's
path, though only :data:`~forex_diffusion.wire.UNKNOWN_NAMES_KEPT` names are kept: a record
of 100,000 extra keys (within a raised ``max_message_bytes``) decoded about 1.3 times slower
within a scope than without. A scope entered again within itself (one instance, nested)
stayed open after its outer ``with``: every later decode of the thread or task was noted in it.
And an asyncio task created within a scope (its context a copy) noted its decodes in it after
the ``with`` had ended.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

from forex_diffusion import wire
from forex_diffusion.wire import UNKNOWN_NAMES_KEPT, UnknownFields

TICK = {"v": 1, "symbol": "EURUSD", "ts": 1_399_248_000_000, "bid": 1.1, "ask": 1.2}


class CountedKeys(dict[str, Any]):
    """A record that counts the keys iterated out of it."""

    drawn = 0

    def __iter__(self) -> Iterator[str]:
        for name in super().__iter__():
            self.drawn += 1
            yield name


def test_noting_a_record_of_many_unknown_fields_draws_only_the_keys_of_the_names_kept() -> None:
    obj = CountedKeys({**{f"x{i}": 0 for i in range(10_000)}, **TICK})  # the extras first, the fields last
    with UnknownFields() as unknown:
        assert wire.TICKS.check(obj) == wire.TICKS.check(TICK)
    assert unknown.count == 10_000
    assert unknown.names == ["x0", "x1", "x2"][:UNKNOWN_NAMES_KEPT]
    assert obj.drawn <= UNKNOWN_NAMES_KEPT  # was 10,000: every key walked


def test_the_names_of_later_records_are_kept_until_the_scope_holds_enough_and_all_are_counted() -> None:
    def raw(**extra: Any) -> bytes:
        return json.dumps({**TICK, **extra}).encode()

    with UnknownFields() as unknown:
        wire.decode_tick(raw(a=1))
        wire.decode_tick(raw())
        wire.decode_tick(raw(b=1, c=2, d=3))
        wire.decode_tick(raw(e=1, v2=None))
    assert (unknown.count, unknown.names) == (6, ["a", "b", "c"])


def test_a_huge_unknown_name_is_kept_clipped_without_the_rest_of_it() -> None:
    name = "\u202e" + "n" * 1_000_000
    with UnknownFields() as unknown:
        wire.decode_tick(json.dumps({**TICK, name: 1}).encode(), max_bytes=2_000_000)
    assert unknown.names == [name[:64]]


def test_a_scope_entered_again_within_itself_ends_with_its_outer_with() -> None:
    extra = json.dumps({**TICK, "bidd": 1}).encode()
    unknown = UnknownFields()
    with unknown:
        with unknown:
            wire.decode_tick(extra)
        wire.decode_tick(extra)
    wire.decode_tick(extra)  # after the scope: noted nowhere (was noted in it, the scope left open)
    assert unknown.count == 2
    with UnknownFields() as later:
        wire.decode_tick(extra)
    assert (unknown.count, later.count) == (2, 1)


def test_a_task_created_within_a_scope_notes_nothing_in_it_after_its_with() -> None:
    extra = json.dumps({**TICK, "bidd": 1}).encode()

    async def decode() -> None:
        wire.decode_tick(extra)

    async def go() -> UnknownFields:
        with UnknownFields() as unknown:
            task = asyncio.ensure_future(decode())  # runs after the with: its context holds the scope
        await task
        return unknown

    assert asyncio.run(go()).count == 0  # was 1
