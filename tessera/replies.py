"""Reply value types that handlers return and tessera.resp encodes.

They subclass builtins (bytes, float, list, str), which mypyc cannot compile as native
classes, so they live in this module, which is never compiled (see scripts/build_fast.py);
tessera.resp re-exports them.
"""

from __future__ import annotations


class SimpleString(bytes):
    """A +status reply, e.g. +OK."""


class Double(float):
    """A floating point reply: bulk string in RESP2, ',' in RESP3 (Redis 7.0 formatting)."""


class Map(list[tuple[object, object]]):
    """Key/value pairs: flat array in RESP2, '%' map in RESP3."""


class SetReply(list[object]):
    """An unordered collection: array in RESP2, '~' set in RESP3."""


class RawReply(bytes):
    """Already-encoded RESP, sent verbatim (e.g. COMMAND INFO copied from Redis)."""


class ErrorReply(str):
    """An error inside a reply (text without the leading '-')."""
