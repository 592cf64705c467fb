"""What a move reports about itself: a frozen, JSON-serializable snapshot."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from migrator.mover_state import Phase


class Progress(BaseModel):
    """One look at a RangeMover (all sizes in bytes, times in Unix seconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: Phase
    ranges: str
    source: str
    target: str
    l0: int | None = None
    # The load: estimates from TSR.COUNT on the source when the dump started.
    keys_estimate: int | None = None
    bytes_estimate: int | None = None
    keys_loaded: int = 0
    bytes_loaded: int = 0
    dump_bytes: int | None = None  # the dump's exact size, once it is written
    load_mb_s: float | None = None  # measured load rate
    eta_s: float | None = None  # until the load is done, at the measured rate
    # The catch-up.
    applied_lsn: int | None = None  # end of the last frame the target applied
    received_lsn: int | None = None  # end of the last frame the tail delivered
    source_log_end: int | None = None  # the source's log end (INFO, every info_interval_ms)
    lag_bytes: int | None = None  # source log end (or last frame) minus applied_lsn
    lag_records: int = 0  # frames with commands delivered but not yet applied
    commands_applied: int = 0
    fence_lsn: int | None = None
    redo_count: int = 0
    started_at: float
    updated_at: float
    error: str | None = None  # the last failure, if the move stopped on one
    note: str | None = None  # the last notable event ("resuming the tail at LSN ...")


def load_eta(total: int | None, done: int, rate_bytes_s: float | None) -> float | None:
    """Seconds left at `rate_bytes_s`, or None when unknown."""
    if total is None or not rate_bytes_s or rate_bytes_s <= 0:
        return None
    return max(total - done, 0) / rate_bytes_s
