"""The byte sizes the gateway cuts a read's runs of commands by (gateway.server)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from gateway.server import _encoded_size
from tessera.resp import encode_command

_ARG = st.binary(max_size=5000)  # past the 4 KB table of precomputed sizes
_COMMANDS = st.lists(st.lists(_ARG, min_size=1, max_size=4), max_size=5)


@given(_COMMANDS, st.data())
def test_a_run_is_as_long_as_its_commands_encoded(
    commands: list[list[bytes]], data: st.DataObject
) -> None:
    """A wrong size would send part of one client's command with another's to a backend."""
    first = data.draw(st.integers(0, len(commands)))
    stop = data.draw(st.integers(first, len(commands)))
    expected = sum(len(encode_command(argv)) for argv in commands[first:stop])
    assert _encoded_size(commands, first, stop) == expected
