"""Which arguments of a command are keys (for logging partitions and for routing).

Positions come from Redis's own command table (first, last, step); the few commands whose
keys move with a numkeys argument are handled explicitly.
"""

from __future__ import annotations

from typing import Final

from tessera.command_table import COMMANDS

# name -> (first, last, step), with last < 0 counted from the end as Redis does.
_SPECS: dict[bytes, tuple[int, int, int]] = {}
for _name, (_arity, _flags, _first, _last, _step) in COMMANDS.items():
    if _first > 0:
        _SPECS[_name.encode()] = (_first, _last, _step)

# Names (as sent, lower or upper case) of commands whose only key is argv[1].
SINGLE_KEY: Final[frozenset[bytes]] = frozenset(
    spelling
    for name, (first, last, _step) in _SPECS.items()
    if first == 1 and last == 1 and name not in (b"zunionstore", b"zinterstore")
    for spelling in (name, name.upper())
)

# numkeys-style commands: name -> (index of numkeys, extra leading key positions)
_NUMKEYS: dict[bytes, tuple[int, tuple[int, ...]]] = {
    b"zunionstore": (2, (1,)),
    b"zinterstore": (2, (1,)),
    b"sintercard": (1, ()),
}


def command_keys(argv: list[bytes]) -> list[bytes]:
    """The key arguments of `argv` (empty for keyless commands like PING or FLUSHALL)."""
    name = argv[0].lower()
    numkeys = _NUMKEYS.get(name)
    if numkeys is not None:
        index, leading = numkeys
        try:
            count = int(argv[index])
        except (IndexError, ValueError):
            return [argv[i] for i in leading if i < len(argv)]
        start = index + 1
        return [argv[i] for i in leading] + argv[start : start + max(count, 0)]
    spec = _SPECS.get(name)
    if spec is None:
        return []
    first, last, step = spec
    if last < 0:
        last += len(argv)
    if first == last:
        return [argv[first]] if first < len(argv) else []
    return argv[first : last + 1 : step]
