"""Which task held the event loop too long: a diagnostic every service can switch on.

Every client of a process waits while one task step runs, so a single long step (a big
batch, a collection, a blocking call) is a stall for all of them. With `--slow-step-ms N`
(or TESSERA_SLOW_STEP_MS=N in the environment) each step of N ms or more is logged with the
task's name, as Redis's latency monitor reports slow events. Off by default: it adds two
clock reads to every task step.
"""

from __future__ import annotations

import logging
import re
import time

import trio

log = logging.getLogger("tessera.slowsteps")

# trio names a task after its function's module and qualified name, but a method compiled by
# mypyc has no __module__, so trio falls back to the bound method's repr.
_BOUND_METHOD = re.compile(r"<bound method ([\w.]+) of <([\w.]+)\.\w+ object at ")


def task_name(task: trio.lowlevel.Task) -> str:
    """The task's function as module.Class.method, whether or not it runs compiled."""
    match = _BOUND_METHOD.match(task.name)
    return f"{match[2]}.{match[1]}" if match else task.name


class SlowStepMonitor(trio.abc.Instrument):
    """A trio instrument that logs and counts task steps of at least `threshold_ms`."""

    def __init__(self, threshold_ms: float) -> None:
        self.threshold_s = threshold_ms / 1000
        self.slow_steps = 0
        self.longest_s = 0.0
        self._started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        elapsed = time.perf_counter() - self._started
        if elapsed < self.threshold_s:
            return
        self.slow_steps += 1
        self.longest_s = max(self.longest_s, elapsed)
        name = task_name(task)
        log.warning(
            "task %s held the event loop for %.1f ms",
            name,
            elapsed * 1000,
            extra={"task": name, "step_ms": round(elapsed * 1000, 1)},
        )


def instruments(threshold_ms: float | None) -> list[trio.abc.Instrument]:
    """The instruments for `trio.run`: a monitor when a threshold is set, else none."""
    return [] if threshold_ms is None else [SlowStepMonitor(threshold_ms)]
