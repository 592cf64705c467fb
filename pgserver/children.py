"""Forked writers (checkpoints, migration dumps) run at a lower CPU priority.

Both are background work no client waits on, yet each serialises a whole keyspace or
partition range flat out. On a machine with fewer cores than busy processes the kernel
then shares the CPU evenly, and the processes serving clients stall behind them; a nice
value of 10 gives a child about a tenth of a serving process's share when they compete,
and all of an idle CPU when they do not.
"""

from __future__ import annotations

import contextlib
import os

BACKGROUND_NICENESS = 10


def enter_background() -> None:
    """Lower this (child) process's CPU priority; a refusal leaves it as it was."""
    with contextlib.suppress(OSError):
        os.nice(BACKGROUND_NICENESS)
