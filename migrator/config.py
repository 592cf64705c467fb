"""Migrator configuration: how fast and how much at once, loaded once and passed down."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MAX_DUMP_READ_BYTES = 8 << 20  # TSR.DUMPREAD gives at most this much per call
MAX_FRAME_BYTES = 64 << 20  # TSR.DUMP ... FRAMED <bytes> accepts at most this


class MoverConfig(BaseModel):
    """Settings of one RangeMover (every size in bytes, every time in milliseconds)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    password: str | None = Field(default=None, repr=False)  # AUTH, if the pgservers need it
    rate_mb_s: float = Field(default=0.0, ge=0)  # load throttle (MB = 2**20 bytes); 0: none
    dump_chunk_elements: int = Field(default=256, ge=1)  # TSR.DUMP ... CHUNK
    # TSR.DUMP ... FRAMED: commands travel in TSR.LOAD frames of about this many bytes
    dump_frame_bytes: int = Field(default=32 << 10, ge=1, le=MAX_FRAME_BYTES)
    dump_read_bytes: int = Field(default=1 << 20, ge=1, le=MAX_DUMP_READ_BYTES)
    batch_bytes: int = Field(default=256 << 10, ge=1)  # commands sent to the target per write
    max_inflight_bytes: int = Field(default=4 << 20, ge=1)  # sent to the target, not replied
    connect_timeout_ms: int = Field(default=5000, ge=1)
    reply_timeout_ms: int = Field(default=30_000, ge=1)  # a pgserver silent this long is dead
    write_timeout_ms: int = Field(default=30_000, ge=1)
    drain_timeout_ms: int = Field(default=5000, ge=0)  # replies awaited when stopped abruptly
    poll_interval_ms: int = Field(default=20, ge=1)  # dump being written, range deletion
    info_interval_ms: int = Field(default=1000, ge=1)  # source log end (lag) and liveness
    progress_interval_ms: int = Field(default=500, ge=1)  # on_progress at most this often
    state_interval_ms: int = Field(default=1000, ge=1)  # save_state of applied_lsn this often
