"""The migrator: moves partition ranges from a source PG master to a target PG master
(dump and load, log catch-up, cutover helpers). See docs/migrator.md."""

from migrator.config import MoverConfig
from migrator.connection import Address
from migrator.mover import RangeMover
from migrator.mover_state import MoverState
from migrator.progress import Progress

__all__ = ["Address", "MoverConfig", "MoverState", "Progress", "RangeMover"]
