"""Gateway configuration, loaded once at the command line and passed down."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class GatewayConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bind: str = "127.0.0.1"
    port: int = Field(default=6000, ge=0, le=65535)
    admin_bind: str = "127.0.0.1"
    admin_port: int = Field(default=6001, ge=0, le=65535)
    # The admin port requires it (AUTH <secret>) and backend connections present it.
    cluster_secret: str | None = Field(default=None, repr=False)
    requirepass: str | None = Field(default=None, repr=False)  # application clients' password
    # GET /metrics (Prometheus text) on this port; None: off, 0: any free port.
    metrics_bind: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    backends: tuple[tuple[str, str], ...] = ()  # (ranges, HOST:PORT) for the static map
    hold_timeout_ms: int = Field(default=5000, ge=1)
    max_held_requests: int = Field(default=100_000, ge=1)
    # A request a backend refused with TRYAGAIN partition (fenced, moving): how long it is
    # held and retried before the client gets the error, and the first retry backoff
    # (doubling, at most 8x).
    moving_hold_ms: int = Field(default=5000, ge=1)
    moving_retry_ms: int = Field(default=50, ge=1)
    backend_timeout_ms: int = Field(default=5000, ge=1)
    reconnect_backoff_ms: int = Field(default=100, ge=1)
    max_reconnect_backoff_ms: int = Field(default=2000, ge=1)
    allow_flush: bool = False
    max_clients: int = Field(default=10_000, ge=1)
    # A client with this many requests whose replies it has not been sent yet is not read
    # until half of them are answered (backpressure instead of unbounded queues).
    max_inflight_per_client: int = Field(default=10_000, ge=1)
    # A client is disconnected when replies keep arriving for it while more than this is
    # already waiting for its socket (it does not read). Redis's normal clients have no
    # limit; this is its replica class's hard limit.
    client_output_limit_bytes: int = Field(default=256 << 20, ge=1)
    max_bulk_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_multibulk_len: int = Field(default=1024 * 1024, ge=1)
    max_inline_bytes: int = Field(default=64 * 1024, ge=1)
    workers: int = Field(default=1, ge=1, le=64)
    # Which of the --workers processes this one is (0: the first). Each registers in
    # ZooKeeper under its own name, so a migration's cutover blocks every worker.
    worker: int = Field(default=0, ge=0, le=63)
