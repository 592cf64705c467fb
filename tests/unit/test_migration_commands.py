"""The TSR.* migration marks as a client and a replaying node see them (no sockets)."""

from __future__ import annotations

from pathlib import Path

import hiredis
import pytest

from pgserver.commands import load_all
from pgserver.config import PgServerConfig
from pgserver.context import Context, execute
from pgserver.dump import write_framed_dump
from pgserver.server import PgServer
from pgserver.string_blocks import MAGIC, encode_section
from tessera.partition import PartitionSet, parse_ranges, pn
from tessera.resp import encode_command
from tests.unit.conftest import Session

load_all()

FAR = 4102444800123  # 2100-01-01, in ms


def _key_in(first: int, last: int, n: int = 0) -> bytes:
    i = found = 0
    while True:
        key = b"key:%d" % i
        if first <= pn(key) <= last:
            if found == n:
                return key
            found += 1
        i += 1


def test_importing_marks_are_listed_logged_and_replayed(session: Session) -> None:
    assert session("TSR.IMPORTING", "ADD", "10-20,15-30") == b"+OK\r\n"
    assert session("TSR.IMPORTING", "ADD", "12") == b"+OK\r\n"  # already: logs nothing
    assert session("TSR.IMPORTING", "DEL", "30") == b"+OK\r\n"
    assert session("TSR.IMPORTING", "list") == b"$5\r\n10-29\r\n"
    assert session.server.logged == [
        [b"TSR.IMPORTING", b"ADD", b"10-30"],
        [b"TSR.IMPORTING", b"DEL", b"30"],
    ]
    assert str(session.replayed().keyspace.importing) == "10-29"


def test_importing_keys_are_invisible_to_clients(session: Session) -> None:
    hidden, shown = _key_in(0, 99), _key_in(100, 8191)
    session("TSR.IMPORTING", "ADD", "0-99")
    session("SET", hidden, "v")  # the migrator's load
    session("SET", shown, "v")
    assert session("DBSIZE") == b":1\r\n"
    assert session("KEYS", "*") == b"*1\r\n$%d\r\n%b\r\n" % (len(shown), shown)
    assert session("SCAN", "0", "COUNT", "10000") == b"*2\r\n$1\r\n0\r\n*1\r\n$%d\r\n%b\r\n" % (
        len(shown),
        shown,
    )
    assert session("RANDOMKEY") == b"$%d\r\n%b\r\n" % (len(shown), shown)
    assert session("TSR.COUNT", "0-99")[:6] == b"*2\r\n:1"  # the migrator still counts them
    session("TSR.IMPORTING", "DEL", "0-99")  # commit: they become visible
    assert session("DBSIZE") == b":2\r\n"


def test_fenced_partitions_refuse_every_keyed_command(session: Session) -> None:
    fenced, free = _key_in(0, 99), _key_in(100, 8191)
    session("SET", fenced, "before")
    reply = session("TSR.FENCE", "ADD", "0-99")
    assert reply.startswith(b":")
    refusal = b"-TRYAGAIN partition %d is moving to another partition group; " % pn(fenced)
    assert session("GET", fenced).startswith(refusal)
    assert session("SET", fenced, "after").startswith(refusal)
    assert session("MSET", free, "1", fenced, "2").startswith(refusal)
    assert session("GET", free) == b"$-1\r\n"  # the MSET was refused whole
    assert session("SET", free, "ok") == b"+OK\r\n"
    assert session("PING") == b"+PONG\r\n"
    assert session("DBSIZE") == b":2\r\n"
    assert session("TSR.FENCE", "LIST") == b"$4\r\n0-99\r\n"
    assert session("TSR.FENCE", "DEL", "0-99") == b"+OK\r\n"  # rollback
    assert session("GET", fenced) == b"$6\r\nbefore\r\n"
    assert not session.server.restricted  # no per-command cost left behind


def test_fence_replays_on_another_node(session: Session) -> None:
    session("TSR.FENCE", "ADD", "5,7-9")
    replica = session.replayed()
    assert str(replica.keyspace.fenced) == "5,7-9"
    assert replica.restricted


def test_bad_arguments_get_clear_errors(session: Session) -> None:
    assert session("TSR.IMPORTING", "ADD", "0-9000").startswith(
        b"-ERR bad partition ranges '0-9000': partition range '0-9000' is not within 0-8191"
    )
    assert session("TSR.FENCE", "ADD", "x").startswith(b"-ERR bad partition ranges 'x'")
    assert session("TSR.IMPORTING", "MOVE", "1").startswith(b"-ERR syntax: TSR.IMPORTING ADD")
    assert session("TSR.FENCE", "ADD").startswith(b"-ERR syntax: TSR.FENCE ADD")
    assert session("TSR.DUMP", "0-1", "CHUNK", "0") == b"-ERR CHUNK must be at least 1\r\n"
    assert session("TSR.DUMPSTATUS", "nope").startswith(b"-ERR no dump 'nope'")
    assert session("TSR.DUMPDROP", "nope") == b":0\r\n"
    assert session("TSR.TAIL", "0", "0-1").startswith(b"-ERR TSR.TAIL needs a client connection")
    assert session.server.logged == []


# ---------------------------------------------------------------------------- TSR.LOAD


def _blob(*commands: list[bytes]) -> bytes:
    return b"".join(encode_command(argv) for argv in commands)


def _state(server: PgServer) -> tuple[object, object]:
    return server.keyspace.data, server.keyspace.expires


def _assert_a_restart_rebuilds(server: PgServer, config: PgServerConfig) -> None:
    """Stop `server` and start another on its data: its keyspace comes back exactly."""
    expected = _state(server)
    server.durability.close()
    restarted = PgServer(config)
    restarted.recover()
    assert _state(restarted) == expected
    restarted.durability.close()


def test_load_applies_a_blob_and_logs_its_commands_not_itself(session: Session) -> None:
    key, hkey = _key_in(0, 99), _key_in(0, 99, 1)
    blob = _blob(
        [b"SET", key, b"v", b"PXAT", b"%d" % FAR],
        [b"del", hkey],
        [b"HSET", hkey, b"f1", b"a", b"f2", b"b"],
        [b"APPEND", key, b"w"],
    )
    assert session("TSR.LOAD", "2", blob) == b":2\r\n"
    assert session("GET", key) == b"$2\r\nvw\r\n"
    assert session("HGET", hkey, "f2") == b"$1\r\nb\r\n"
    assert session("PEXPIRETIME", key) == b":%d\r\n" % FAR
    logged = session.server.logged
    assert [argv[0] for argv in logged] == [b"SET", b"HSET", b"APPEND"]  # DEL of nothing: no
    assert all(argv[0] != b"TSR.LOAD" for argv in logged)
    session.assert_replay_matches()


def test_a_framed_dump_loaded_frame_by_frame_rebuilds_the_range(tmp_path: Path) -> None:
    source = Session()
    for i in range(300):
        source("SET", f"s{i}", f"value{i}" * (i % 7))
        source("RPUSH", f"l{i % 30}", *(f"e{j}" for j in range(i % 11 + 1)))
        source("ZADD", f"z{i % 20}", f"{i / 7}", f"m{i}")
        if i % 5 == 0:
            source("PEXPIREAT", f"s{i}", FAR + i)
    ks = source.server.keyspace
    path = tmp_path / "dump.resp"
    keys = write_framed_dump(path, ks, [(0, 8191)], 3, 700)
    reader = hiredis.Reader()
    reader.feed(path.read_bytes())
    target = Session()
    loaded = 0
    while (frame := reader.gets()) is not False:
        reply = target(*frame)
        assert reply == b":%b\r\n" % frame[1]
        loaded += int(frame[1])
    assert loaded == keys == len(ks.data)
    assert _state(target.server) == _state(source.server)
    target.assert_replay_matches()


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (_blob([b"SET", b"a", b"1"], [b"FLUSHALL"]), b"command 2 of the blob is 'FLUSHALL'"),
        (_blob([b"SET", b"a", b"1"], [b"TSR.LOAD", b"0", b""]), b"is 'TSR.LOAD', not one"),
        (_blob([b"SET", b"a", b"1"], [b"INCR", b"b"]), b"is 'INCR', not one a dump writes"),
        (_blob([b"SET", b"a", b"1"], [b"SET", b"b", b"2"])[:-3], b"ends in the middle"),
        (_blob([b"SET", b"a", b"1"]) + b"SET b 2\r\n", b"the blob is not RESP"),
        (_blob([b"SET", b"a", b"1"]) + b":12\r\n", b"element 2 of the blob is not a command"),
        (_blob([b"SET", b"a", b"1"]) + b"*2\r\n$3\r\nDEL\r\n:1\r\n", b"not a bulk string"),
    ],
)
def test_load_refuses_a_bad_blob_whole(session: Session, blob: bytes, why: bytes) -> None:
    reply = session("TSR.LOAD", "2", blob)
    assert reply.startswith(b"-ERR TSR.LOAD: ")
    assert why in reply
    assert reply.endswith(b"; nothing of it was applied\r\n")
    assert session("EXISTS", "a") == b":0\r\n"
    assert session.server.logged == []


def test_load_stops_at_the_first_error_and_replies_it(session: Session) -> None:
    session("SET", "h", "a string")
    blob = _blob([b"SET", b"a", b"1"], [b"HSET", b"h", b"f", b"v"], [b"SET", b"b", b"2"])
    assert session("TSR.LOAD", "3", blob).startswith(b"-WRONGTYPE")
    assert session("GET", "a") == b"$1\r\n1\r\n"  # what ran before it stays
    assert session("EXISTS", "b") == b":0\r\n"
    assert session("TSR.LOAD", "1", _blob([b"SET", b"a"])) == (
        b"-ERR wrong number of arguments for 'set' command\r\n"
    )
    assert session.server.logged == [[b"SET", b"h", b"a string"], [b"SET", b"a", b"1"]]
    assert session("TSR.LOAD", "-1", b"") == b"-ERR TSR.LOAD <keys> must not be negative\r\n"
    assert session("TSR.LOAD", "x", b"").startswith(b"-ERR value is not an integer")
    assert session("TSR.LOAD", "0", b"") == b":0\r\n"


def test_load_is_refused_on_a_slave_and_on_fenced_partitions(session: Session) -> None:
    fenced, free = _key_in(0, 99), _key_in(100, 8191)
    session("TSR.FENCE", "ADD", "0-99")
    blob = _blob([b"SET", free, b"1"], [b"SET", fenced, b"2"])
    reply = session("TSR.LOAD", "2", blob)
    assert reply.startswith(b"-TRYAGAIN partition %d is moving" % pn(fenced))
    assert session.server.keyspace.get(free) == b"1"  # what ran before the refusal stays
    assert session.server.keyspace.get(fenced) is None
    session("TSR.FENCE", "DEL", "0-99")
    session.server.replication.role = "slave"
    session.server.update_restrictions()
    reply = session("TSR.LOAD", "1", _blob([b"SET", b"x", b"1"]))
    assert reply.startswith(b"-READONLY")
    assert session.server.keyspace.get(b"x") is None


def test_load_logs_the_blob_as_it_came_and_a_restart_replays_it(tmp_path: Path) -> None:
    config = PgServerConfig(port=0, data_dir=tmp_path, log_enabled=True)
    server = PgServer(config)
    server.recover()
    ctx = Context(server)
    plain = _blob(*([b"SET", b"k%d" % i, b"v%d" % i] for i in range(50)))
    assert execute(ctx, [b"TSR.LOAD", b"50", plain]) == b":50\r\n"
    assert server.durability._pieces == [plain]  # not re-encoded
    assert server.durability._pieces[0] is plain
    # A rewritten command (SET ... EX becomes PXAT) or a DEL of nothing: encoded as logged.
    mixed = _blob([b"DEL", b"h"], [b"HSET", b"h", b"f", b"v"], [b"SET", b"t", b"1", b"EX", b"100"])
    assert execute(ctx, [b"TSR.LOAD", b"2", mixed]) == b":2\r\n"
    assert len(server.durability._pieces) == 3
    server.durability.write()
    payload = b"".join(record.payload for record in server.durability.log.read(0))
    assert payload.startswith(plain)
    assert b"TSR.LOAD" not in payload
    assert len(server.keyspace.data) == 52
    _assert_a_restart_rebuilds(server, config)


# ---------------------------------------------------------------------------- TSR.LOADSTRINGS


def _block(*keys_values: tuple[bytes, bytes]) -> bytes:
    """A string block with one section per key (as a dump writes a partition's keys)."""
    return MAGIC + b"".join(encode_section(pn(key), [key], [value]) for key, value in keys_values)


def test_loadstrings_stores_as_set_would_and_logs_itself_with_its_partitions(
    session: Session,
) -> None:
    a, b, c = _key_in(0, 99), _key_in(0, 99, 1), _key_in(5000, 5100)
    session("HSET", a, "f", "v")  # a leftover of another type: replaced, as SET does
    session("SET", b, "old", "PXAT", str(FAR))  # a TTL: cleared, as SET does
    session.server.logged.clear()
    block = _block((a, b"1"), (b, b"2"), (c, b"3"))
    assert session("TSR.LOADSTRINGS", "3", block) == b":3\r\n"
    assert [session("GET", key) for key in (a, b, c)] == [
        b"$1\r\n1\r\n",
        b"$1\r\n2\r\n",
        b"$1\r\n3\r\n",
    ]
    assert session("TTL", b) == b":-1\r\n"
    assert session.server.logged == [[b"TSR.LOADSTRINGS", b"3", block]]
    session.assert_replay_matches()
    expected = Session()
    for key, value in ((a, b"1"), (b, b"2"), (c, b"3")):
        expected("SET", key, value)
    assert _state(session.server) == _state(expected.server)


def test_loadstrings_refuses_a_bad_block_whole(session: Session) -> None:
    good = _block((b"a", b"1"))
    wrong_partition = MAGIC + encode_section(pn(b"a") + 1, [b"a"], [b"1"])
    for block in (good + wrong_partition, good[:-1], b"junk"):
        reply = session("TSR.LOADSTRINGS", "2", block)
        assert reply.startswith(b"-ERR TSR.LOADSTRINGS: ")
        assert reply.endswith(b"; nothing of it was applied\r\n")
    assert session("EXISTS", "a") == b":0\r\n"
    assert session("TSR.LOADSTRINGS", "-1", good).startswith(b"-ERR TSR.LOADSTRINGS <keys>")
    assert session.server.logged == []


def test_loadstrings_is_refused_on_a_slave_and_on_fenced_partitions(session: Session) -> None:
    fenced, free = _key_in(0, 99), _key_in(100, 8191)
    session("TSR.FENCE", "ADD", "0-99")
    reply = session("TSR.LOADSTRINGS", "2", _block((free, b"1"), (fenced, b"2")))
    assert reply.startswith(b"-TRYAGAIN partition %d is moving" % pn(fenced))
    assert session.server.keyspace.get(free) is None  # refused whole
    session("TSR.FENCE", "DEL", "0-99")
    session.server.replication.role = "slave"
    session.server.update_restrictions()
    assert session("TSR.LOADSTRINGS", "1", _block((free, b"1"))).startswith(b"-READONLY")


def test_loadstrings_survives_a_restart(tmp_path: Path) -> None:
    config = PgServerConfig(port=0, data_dir=tmp_path, log_enabled=True)
    server = PgServer(config)
    server.recover()
    ctx = Context(server)
    pairs = [(b"k%d" % i, b"v%d" % i) for i in range(50)]
    block = _block(*pairs)
    assert execute(ctx, [b"TSR.LOADSTRINGS", b"50", block]) == b":50\r\n"
    server.durability.write()
    records = list(server.durability.log.read(0))
    assert sorted({p for record in records for p in record.partitions}) == sorted(
        {pn(key) for key, _ in pairs}
    )
    _assert_a_restart_rebuilds(server, config)


def test_droppartitions_is_only_replayed(session: Session) -> None:
    key = _key_in(0, 99)
    session("SET", key, "v")
    reply = session("TSR.DROPPARTITIONS", "0-99")
    assert reply.startswith(b"-ERR TSR.DROPPARTITIONS is only replayed from the log")
    assert session.server.keyspace.get(key) == b"v"
    server = session.server
    assert execute(server.replay_ctx, [b"TSR.DROPPARTITIONS", b"0-99"]) == b":1\r\n"
    assert server.keyspace.get(key) is None


# ---------------------------------------------------------------------------- TSR.DELRANGE


def test_range_deletion_logs_what_it_deletes_and_a_replay_deletes_the_same(
    tmp_path: Path,
) -> None:
    config = PgServerConfig(port=0, data_dir=tmp_path, log_enabled=True)
    server = PgServer(config)
    server.recover()
    ks = server.keyspace
    ctx = Context(server)
    for i in range(6000):
        execute(ctx, [b"SET", b"k%d" % i, b"v"])
    for i in range(12000):  # one partition bigger than a step: deleted key by key
        execute(ctx, [b"SET", b"{big}%d" % i, b"v"])
    big = _key_in(0, 2000, 7)
    execute(ctx, [b"HSET", big, *(b"f%d" % (i // 2) for i in range(6000))])  # freed in pieces
    execute(ctx, [b"PEXPIREAT", _key_in(0, 2000, 3), b"%d" % FAR])
    server.durability.write()
    tag = pn(b"{big}")
    inside = {k for k in ks.data if pn(k) <= 2000 or pn(k) == tag}
    outside = set(ks.data) - inside
    before = server.durability.log.end_lsn
    assert server.migration.delete_ranges([(0, 2000), (tag, tag)]) == len(inside)
    ticks = 0
    while server.migration.deleting or server.migration._freeing:
        server.migration._delete_step()
        execute(ctx, [b"SET", b"other", b"v"])  # a client's write may share a record
        ticks += 1
    server.durability.write()
    assert ticks > 1
    assert server.migration.longest_delete_tick > 0
    assert server.migration.deleted_keys == len(inside)
    assert set(ks.data) == outside | {b"other"}
    names: set[bytes] = set()
    for record in server.durability.log.read(before):
        reader = hiredis.Reader()
        reader.feed(record.payload)
        while (argv := reader.gets()) is not False:
            names.add(argv[0])
            if argv[0] == b"DEL":
                # The record's partitions cover every key in it (what tails filter on).
                assert {pn(key) for key in argv[1:]} <= set(record.partitions)
            elif argv[0] == b"TSR.DROPPARTITIONS":
                dropped = PartitionSet(parse_ranges(argv[1].decode())).members()
                assert set(dropped) <= set(record.partitions)
    assert names == {b"DEL", b"TSR.DROPPARTITIONS", b"SET"}
    _assert_a_restart_rebuilds(server, config)
