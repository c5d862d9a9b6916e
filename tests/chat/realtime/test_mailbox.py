"""The socket's mailbox: what ``asyncio.Queue`` gave the socket loop, in a few bytes."""

from __future__ import annotations

import asyncio
import sys

from crm.chat.realtime.socket import Mailbox


def test_it_hands_items_over_in_order_and_wakes_the_waiting_reader() -> None:
    async def scenario() -> list[tuple[bool, dict]]:
        box = Mailbox()
        got: list[tuple[bool, dict]] = []

        async def reader() -> None:
            for _ in range(5):
                got.append(await box.get())

        task = asyncio.ensure_future(reader())
        await asyncio.sleep(0)  # the reader now waits on an empty box
        box.put((True, {"n": 0}))
        box.put((False, {"n": 1}))
        await asyncio.sleep(0)
        for n in range(2, 5):
            box.put((n % 2 == 0, {"n": n}))
        await asyncio.wait_for(task, 5)
        assert len(box) == 0
        return got

    got = asyncio.run(scenario())
    assert [item[1]["n"] for item in got] == [0, 1, 2, 3, 4]
    assert [item[0] for item in got] == [True, False, True, False, True]


def test_a_cancelled_reader_leaves_the_box_usable() -> None:
    async def scenario() -> dict:
        box = Mailbox()
        waiting = asyncio.ensure_future(box.get())
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.sleep(0)
        box.put((True, {"after": "cancel"}))
        return (await asyncio.wait_for(box.get(), 5))[1]

    assert asyncio.run(scenario()) == {"after": "cancel"}


def test_a_backlog_drains_in_order_and_frees_its_list() -> None:
    async def scenario() -> tuple[list[int], int]:
        box = Mailbox()
        for n in range(10_000):
            box.put((False, {"n": n}))
        out = [(await box.get())[1]["n"] for _ in range(10_000)]
        return out, len(box._items)

    out, left = asyncio.run(scenario())
    assert out == list(range(10_000))
    assert left == 0


def test_it_is_far_smaller_than_an_asyncio_queue() -> None:
    async def sizes() -> tuple[int, int]:
        box, queue = Mailbox(), asyncio.Queue()  # type: ignore[var-annotated]
        mailbox = sys.getsizeof(box) + sys.getsizeof(box._items)
        parts = (queue, queue._queue, queue._getters, queue._putters, queue._finished)  # type: ignore[attr-defined]
        return mailbox, sum(sys.getsizeof(p) for p in parts)

    mailbox, queue = asyncio.run(sizes())
    assert mailbox * 5 < queue
