"""Redis glob patterns (stringmatchlen): * ? [abc] [^a-z] and backslash escapes."""

from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=256)
def compile_glob(pattern: bytes, nocase: bool = False) -> re.Pattern[bytes]:
    """Translate a Redis glob into an anchored bytes regex."""
    out = bytearray()
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # *
            out += b".*"
        elif c == 0x3F:  # ?
            out += b"."
        elif c == 0x5C and i + 1 < n:  # backslash escape
            i += 1
            out += re.escape(pattern[i : i + 1])
        elif c == 0x5B:  # [
            i += 1
            negate = i < n and pattern[i] == 0x5E
            if negate:
                i += 1
            items = bytearray()
            while i < n and pattern[i] != 0x5D:
                if pattern[i] == 0x5C and i + 1 < n:
                    i += 1
                    items += re.escape(pattern[i : i + 1])
                elif i + 2 < n and pattern[i + 1] == 0x2D and pattern[i + 2] != 0x5D:
                    lo, hi = pattern[i], pattern[i + 2]
                    if lo > hi:
                        lo, hi = hi, lo
                    items += b"%b-%b" % (re.escape(bytes([lo])), re.escape(bytes([hi])))
                    i += 2
                else:
                    items += re.escape(pattern[i : i + 1])
                i += 1
            # Redis treats an unterminated class as ending at the pattern's end.
            if not items:
                out += b"(?!)" if not negate else b"."
            else:
                out += b"[" + (b"^" if negate else b"") + bytes(items) + b"]"
        else:
            out += re.escape(pattern[i : i + 1])
        i += 1
    flags = re.DOTALL | (re.IGNORECASE if nocase else 0)
    return re.compile(bytes(out) + rb"\Z", flags)


def glob_match(pattern: bytes, value: bytes, nocase: bool = False) -> bool:
    if pattern == b"*":
        return True
    return compile_glob(pattern, nocase).match(value) is not None
