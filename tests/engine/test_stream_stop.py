"""Serve's change-stream subscribers stop when serve stops, even when a library swallows the first cancellation."""

from __future__ import annotations

import asyncio

import pytest

from ml_connector.events.stream_serve import stop_tasks


async def _swallows_once(log: list[str]) -> None:
    """What gRPC's call preparation does: a cancellation landing in it completes it normally (grpc/aio/_call.py
    `_prepare_rpc`), so the subscriber awaiting it never sees the CancelledError and reads on for ever."""
    try:
        await asyncio.sleep(3600)
    except asyncio.CancelledError:
        log.append("swallowed")
    await asyncio.sleep(3600)


async def _ends_with(error: BaseException) -> None:
    raise error


def test_a_subscriber_that_swallowed_its_cancellation_is_cancelled_again() -> None:
    async def scenario() -> tuple[list[str], bool]:
        log: list[str] = []
        task = asyncio.create_task(_swallows_once(log))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(stop_tasks([task], wait=0.05, tries=3))
        done, _ = await asyncio.wait({stopping}, timeout=5)
        assert done, "the subscriber was never stopped"
        return log, task.cancelled()

    assert asyncio.run(scenario()) == (["swallowed"], True)


def test_a_subscriber_that_ignores_every_cancellation_is_left_after_the_tries() -> None:
    ignoring = [True]
    swallowed: list[int] = []

    async def stubborn() -> None:
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                if not ignoring[0]:
                    raise
                swallowed.append(1)

    async def scenario() -> list[bool]:
        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        left = await stop_tasks([task], wait=0.02, tries=3)
        ignoring[0] = False  # let the event loop's own shutdown end it
        return [t is task for t in left]

    assert asyncio.run(scenario()) == [True]
    assert len(swallowed) == 3


def test_stopping_subscribers_passes_the_callers_own_cancellation_on() -> None:
    """The old stop awaited each task under suppress(CancelledError): a stop of serve itself was swallowed there."""
    async def scenario() -> None:
        task = asyncio.create_task(asyncio.sleep(3600))
        failed = asyncio.create_task(_ends_with(RuntimeError("refused")))
        await asyncio.sleep(0)
        stopping = asyncio.create_task(stop_tasks([task, failed], wait=10, tries=1))
        await asyncio.sleep(0)
        stopping.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stopping

    asyncio.run(scenario())
