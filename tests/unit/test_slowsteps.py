"""The slow-step monitor, on a real trio run."""

from __future__ import annotations

import logging
import time

import pytest
import trio

from tessera.slowsteps import SlowStepMonitor, instruments


def test_a_step_that_blocks_the_loop_is_logged_with_its_task(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor = SlowStepMonitor(threshold_ms=20)

    async def hog() -> None:
        time.sleep(0.05)  # noqa: ASYNC251 - the blocking call under test

    async def polite() -> None:
        for _ in range(5):
            await trio.sleep(0.001)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hog, name="the-hog")
            nursery.start_soon(polite, name="polite")

    with caplog.at_level(logging.WARNING, logger="tessera.slowsteps"):
        trio.run(main, instruments=[monitor])
    assert monitor.slow_steps == 1
    assert monitor.longest_s >= 0.05
    [record] = caplog.records
    assert "task the-hog held the event loop for" in record.getMessage()


def test_off_without_a_threshold() -> None:
    assert instruments(None) == []
    [monitor] = instruments(5)
    assert isinstance(monitor, SlowStepMonitor)


def test_a_compiled_method_is_named_like_an_interpreted_one(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """trio names a task running a mypyc-compiled method by the bound method's repr."""
    monitor = SlowStepMonitor(threshold_ms=0)

    async def step() -> None:
        pass

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            name = "<bound method PgServer.serve of <pgserver.server.PgServer object at 0x7f>>"
            nursery.start_soon(step, name=name)

    with caplog.at_level(logging.WARNING, logger="tessera.slowsteps"):
        trio.run(main, instruments=[monitor])
    logged = [record.getMessage() for record in caplog.records]
    assert any("task pgserver.server.PgServer.serve held" in line for line in logged)
