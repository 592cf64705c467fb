"""pgserver configuration, loaded once at the command line and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class PgServerConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    bind: str = "127.0.0.1"
    port: int = Field(default=7000, ge=0, le=65535)
    # GET /metrics (Prometheus text) on this port; None: off, 0: any free port.
    metrics_bind: str = "127.0.0.1"
    metrics_port: int | None = Field(default=None, ge=0, le=65535)
    data_dir: Path = Path("data/pgserver")
    requirepass: str | None = Field(default=None, repr=False)
    # pgservers serve only internal clients (gateways, slaves, the confmaster, the
    # migrator), so the cluster secret is their one password; --requirepass names the same
    # thing for a standalone pgserver. Unauthenticated refusals close the connection when
    # a cluster secret is set.
    cluster_secret: str | None = Field(default=None, repr=False)
    max_clients: int = Field(default=10_000, ge=1)
    max_bulk_bytes: int = Field(default=512 * 1024 * 1024, ge=1)
    max_multibulk_len: int = Field(default=1024 * 1024, ge=1)
    max_inline_bytes: int = Field(default=64 * 1024, ge=1)
    active_expire_interval_ms: int = Field(default=100, ge=1)
    active_expire_budget_ms: float = Field(default=1.0, gt=0)
    fsync: Literal["always", "everysec", "no"] = "everysec"
    managed: bool = False  # roles come from the confmaster; no role until told
    log_enabled: bool = True  # False only for benchmarks: memory only, nothing survives
    log_segment_mb: int = Field(default=64, ge=1)
    checkpoint_every_mb: int = Field(default=256, ge=0)  # 0: only on BGSAVE/SAVE
    keep_log_mb: int = Field(default=256, ge=0)  # log kept behind a checkpoint for slaves
    # A finished migration dump nobody has asked about for this long is dropped: its mover
    # died without TSR.DUMPDROP, and the dump would otherwise keep its file and hold back
    # log truncation (from its LSN) until a restart. A mover that comes back later starts
    # a new dump, as it does after a restart of the source.
    dump_idle_timeout_s: float = Field(default=600.0, gt=0)

    @model_validator(mode="after")
    def _one_password(self) -> PgServerConfig:
        if (
            self.cluster_secret is not None
            and self.requirepass is not None
            and self.cluster_secret != self.requirepass
        ):
            raise ValueError(
                "a pgserver has one password: give the cluster secret or --requirepass, "
                "not two different ones"
            )
        return self

    @property
    def password(self) -> str | None:
        """What AUTH must present: the cluster secret, else requirepass."""
        return self.cluster_secret if self.cluster_secret is not None else self.requirepass
