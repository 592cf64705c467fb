"""The one exception hierarchy of Tessera; foreign exceptions are translated at the edges."""

from __future__ import annotations


class TesseraError(Exception):
    """Root of every error Tessera raises on purpose."""


class ConfigError(TesseraError):
    """Bad command line or configuration; reported as one line and a non-zero exit."""


class ProtocolError(TesseraError):
    """A broken RESP stream. `reply` is the error line to send before closing the connection."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.reply = message


class CommandError(TesseraError):
    """A command failed; `reply` is the Redis error text (without the leading '-')."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class StorageError(TesseraError):
    """The on-disk log or a checkpoint is unreadable or could not be written."""


class ReplicationError(TesseraError):
    """Replication stream or role problem."""


class CoordinationError(TesseraError):
    """ZooKeeper / confmaster coordination failed."""


class MigrationError(TesseraError):
    """A migration job step failed."""
