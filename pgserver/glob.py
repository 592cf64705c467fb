"""Redis glob patterns, matched exactly as Redis 7.0's stringmatchlen() matches them.

The pattern is translated once (cached) into an anchored bytes regex that runs at C speed:

* ``*`` any run of bytes, ``?`` one byte, ``\\x`` the byte x, ``[...]`` a byte class with
  ``^`` negation, ``a-z`` ranges (ends swapped when reversed) and ``\\`` escapes.
* Quirks kept on purpose, because Redis has them: bytes are compared as signed C chars in
  ranges (``[a-\\xff]`` covers 0x00-0x61 and 0xff); ``[a-]`` is a range up to ``]`` and does not
  close the class; an unclosed class runs to the end of the pattern; an empty string matches
  only the empty pattern (``*`` matches it only through the KEYS/SCAN shortcut below); a
  pattern needing more than 1000 nested ``*`` never matches (Redis's recursion guard).
* Every ``*`` but the last becomes an atomic lazy group, so no pattern can make the regex
  backtrack exponentially (Redis bounds its matcher the same way).
"""

from __future__ import annotations

import re
from functools import lru_cache

_STAR = -1
_ANY = -2
_MAX_NESTING = 1000
_DOTALL = re.DOTALL

# A class token is the frozenset of byte values it accepts.
_Token = int | frozenset[int]


def _signed(byte: int) -> int:
    return byte - 256 if byte > 127 else byte


def _lower(c: int) -> int:
    return c + 32 if 65 <= c <= 90 else c


def _class_members(items: list[tuple[str, int, int]], negate: bool, nocase: bool) -> frozenset[int]:
    """The bytes a [...] class accepts, evaluated byte by byte the way stringmatchlen does."""
    members = set()
    for byte in range(256):
        sc = _signed(byte)
        match = False
        for kind, a, b in items:
            if kind == "esc":
                match = byte == a
            elif kind == "range":
                start, end = _signed(a), _signed(b)
                if start > end:
                    start, end = end, start
                c = sc
                if nocase:
                    start, end, c = _lower(start), _lower(end), _lower(c)
                match = start <= c <= end
            else:
                match = _lower(byte) == _lower(a) if nocase else byte == a
            if match:
                break
        if match != negate:
            members.add(byte)
    return frozenset(members)


def _tokenize(pattern: bytes, nocase: bool) -> list[_Token]:
    """Split a pattern into _STAR, _ANY, literal byte values and class byte sets."""
    tokens: list[_Token] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == 0x2A:  # *
            while i + 1 < n and pattern[i + 1] == 0x2A:
                i += 1
            tokens.append(_STAR)
        elif c == 0x3F:  # ?
            tokens.append(_ANY)
        elif c == 0x5B:  # [
            i += 1
            negate = i < n and pattern[i] == 0x5E
            if negate:
                i += 1
            items: list[tuple[str, int, int]] = []
            while True:
                if i < n and pattern[i] == 0x5C and n - i >= 2:
                    i += 1
                    items.append(("esc", pattern[i], 0))
                elif i < n and pattern[i] == 0x5D:
                    break
                elif i >= n:
                    i -= 1  # unclosed: the class ends with the pattern
                    break
                elif n - i >= 3 and pattern[i + 1] == 0x2D:
                    items.append(("range", pattern[i], pattern[i + 2]))
                    i += 2
                else:
                    items.append(("lit", pattern[i], 0))
                i += 1
            tokens.append(_class_members(items, negate, nocase))
        else:
            if c == 0x5C and n - i >= 2:  # backslash escape
                i += 1
                c = pattern[i]
            tokens.append(c)
        i += 1
    return tokens


def _byte_class(members: frozenset[int]) -> bytes:
    if not members:
        return b"(?!)"
    if len(members) == 256:
        return b"."
    parts: list[bytes] = []
    ordered = sorted(members)
    start = prev = ordered[0]
    for byte in [*ordered[1:], -1]:
        if byte == prev + 1:
            prev = byte
            continue
        parts.append(b"\\x%02x" % start if start == prev else b"\\x%02x-\\x%02x" % (start, prev))
        start = prev = byte
    return b"[" + b"".join(parts) + b"]"


def _fragment(token: _Token, nocase: bool) -> bytes:
    if isinstance(token, frozenset):
        return _byte_class(token)
    if token == _ANY:
        return b"."
    if nocase and (65 <= token <= 90 or 97 <= token <= 122):
        return b"[\\x%02x\\x%02x]" % (token & ~32, token | 32)
    return b"\\x%02x" % token


@lru_cache(maxsize=256)
def compile_glob(pattern: bytes, nocase: bool = False) -> re.Pattern[bytes]:
    """An anchored regex that matches (with .match) exactly what Redis's glob matches.

    ``*`` alone matches everything, the empty string included, as KEYS/SCAN/HSCAN treat it.
    """
    if pattern == b"*":
        return re.compile(rb".*\Z", _DOTALL)
    tokens = _tokenize(pattern, nocase)
    stars = tokens.count(_STAR)
    if stars - (1 if tokens and tokens[-1] == _STAR else 0) > _MAX_NESTING:
        return re.compile(rb"(?!)")
    segments: list[list[_Token]] = [[]]
    for token in tokens:
        if token == _STAR:
            segments.append([])
        else:
            segments[-1].append(token)
    parts = [b"(?=.)"] if pattern else []
    parts.extend(_fragment(t, nocase) for t in segments[0])
    if len(segments) > 1:
        # A fixed-width piece between two stars is best matched at its earliest position,
        # so the atomic group never needs to give anything back.
        for middle in segments[1:-1]:
            parts.append(b"(?>.*?" + b"".join(_fragment(t, nocase) for t in middle) + b")")
        parts.append(b".*")
        parts.extend(_fragment(t, nocase) for t in segments[-1])
    parts.append(rb"\Z")
    return re.compile(b"".join(parts), _DOTALL)


def glob_match(pattern: bytes, value: bytes, nocase: bool = False) -> bool:
    """Whether `value` matches the Redis glob `pattern`."""
    if pattern == b"*":
        return True
    return compile_glob(pattern, nocase).match(value) is not None
