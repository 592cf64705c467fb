"""The cycle-collector pause counters, against real collections."""

from __future__ import annotations

import gc

from tessera.gcstats import GcPauses, freeze_startup_heap


def test_counts_and_times_real_collections() -> None:
    pauses = GcPauses()
    pauses.install()
    pauses.install()  # idempotent: a second server in the process shares the callback
    try:
        gc.collect(0)
        gc.collect()
    finally:
        pauses.uninstall()
    assert pauses.collections[0] >= 1
    assert pauses.collections[2] >= 1
    assert pauses.longest_s[2] > 0
    assert pauses.total_s[2] >= pauses.longest_s[2]
    fields = dict(pauses.info_fields())
    assert fields["gc_full_collections"] == pauses.collections[2]
    assert float(str(fields["gc_pause_max_ms"])) > 0
    names = {family.name for family in pauses.metrics()}
    assert names == {
        "tessera_gc_collections",
        "tessera_gc_pause_seconds",
        "tessera_gc_pause_max_seconds",
    }


def test_uninstalled_counters_stay_still() -> None:
    pauses = GcPauses()
    gc.collect()
    assert pauses.collections == [0, 0, 0]


def test_the_startup_heap_is_left_out_of_later_collections() -> None:
    class Config:
        """Stands for what a service builds before it serves."""

    before = Config()
    try:
        freeze_startup_heap()
        during = Config()
        tracked = gc.get_objects()
        assert not any(obj is before for obj in tracked)
        assert any(obj is during for obj in tracked)
    finally:
        gc.unfreeze()
