"""The pgserver's migration primitives with real processes, as a migrator would use them:
dump + load + tail into a second pgserver under a live write load, importing marks,
fences that survive SIGKILL, range deletion mirrored by a slave, and no stalls."""

from __future__ import annotations

import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hiredis
import pytest
import redis

from tessera.partition import PartitionSet, parse_ranges, pn
from tessera.resp import encode_command
from tests.procs import start_pgserver, stop

MOVING = "0-4095"
MOVING_SET = PartitionSet(parse_ranges(MOVING))
FAR_MS = 4102444800123  # 2100-01-01


def moving(key: bytes | str) -> bool:
    return pn(key.encode() if isinstance(key, str) else key) in MOVING_SET


def as_dict(reply: object) -> dict[bytes, Any]:
    """A map reply, whichever protocol the client negotiated."""
    if isinstance(reply, dict):
        return reply
    assert isinstance(reply, list)
    return dict(zip(reply[::2], reply[1::2], strict=True))


def call(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def wait_until(condition: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def parse_commands(data: bytes) -> list[list[bytes]]:
    reader = hiredis.Reader()
    reader.feed(data)
    commands = []
    while (argv := reader.gets()) is not False:
        commands.append(argv)
    return commands


def apply(client: redis.Redis, commands: list[list[bytes]]) -> None:
    """Send commands as a migrator would: pipelined, in batches, every reply checked."""
    for start in range(0, len(commands), 500):
        pipe = client.pipeline(transaction=False)
        for argv in commands[start : start + 500]:
            pipe.execute_command(*argv)  # type: ignore[no-untyped-call]
        for argv, reply in zip(
            commands[start : start + 500], pipe.execute(raise_on_error=False), strict=True
        ):
            assert not isinstance(reply, Exception), (argv[:2], reply)


def start_dump(client: redis.Redis, *args: str) -> tuple[int, bytes]:
    """TSR.DUMP: (L0, dump id)."""
    reply = call(client, "TSR.DUMP", *args)
    assert isinstance(reply, list)
    lsn, dump_id = reply
    assert isinstance(lsn, int)
    assert isinstance(dump_id, bytes)
    return lsn, dump_id


def read_dump_chunk(client: redis.Redis, dump_id: bytes, offset: int) -> bytes | None:
    """The next piece of a dump, or None while the child has not written that far."""
    try:
        chunk = call(client, "TSR.DUMPREAD", dump_id, offset, 1 << 20)
    except redis.ResponseError as exc:
        if str(exc).startswith(f"dump {dump_id.decode()} is still being written"):
            return None
        raise
    assert isinstance(chunk, bytes)
    return chunk


def read_dump(client: redis.Redis, dump_id: bytes) -> bytes:
    """The whole dump, read while it is being written and after."""
    data = b""
    while True:
        chunk = read_dump_chunk(client, dump_id, len(data))
        if chunk is None:
            time.sleep(0.01)
            continue
        if not chunk:
            status = as_dict(call(client, "TSR.DUMPSTATUS", dump_id))
            assert status[b"state"] == b"done"
            assert status[b"bytes"] == len(data)
            return data
        data += chunk


class Tail:
    """A TSR.TAIL stream on its own socket: frames of (end_lsn, timestamp, commands)."""

    def __init__(self, port: int, lsn: int, ranges: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.reader = hiredis.Reader()
        self.sock.sendall(encode_command([b"TSR.TAIL", b"%d" % lsn, ranges.encode()]))
        self.header = self._next()
        if isinstance(self.header, hiredis.ReplyError):
            self.sock.close()
            raise redis.ResponseError(str(self.header))

    def _next(self) -> object:
        while (item := self.reader.gets()) is False:
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the tail was closed")
            self.reader.feed(data)
        return item

    def frames_until(self, lsn: int) -> Iterator[tuple[int, int, list[list[bytes]]]]:
        """Frames up to the first one whose end LSN reaches `lsn`."""
        while True:
            frame = self._next()
            assert isinstance(frame, list), frame
            end, timestamp, commands = frame
            yield end, timestamp, commands
            if end >= lsn:
                return

    def close(self) -> None:
        self.sock.close()


def migration_info(port: int) -> dict[str, str]:
    """INFO migration as raw text fields (redis-py would turn "1,5" into a list)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(encode_command([b"READONLY"]) + encode_command([b"INFO", b"migration"]))
        reader = hiredis.Reader()
        replies: list[object] = []
        while len(replies) < 2:
            reader.feed(sock.recv(65536))
            while (reply := reader.gets()) is not False:
                replies.append(reply)
    text = replies[1]
    assert isinstance(text, bytes)
    return dict(line.split(":", 1) for line in text.decode().splitlines() if ":" in line)


def log_end(client: redis.Redis) -> int:
    return int(client.info("persistence")["log_end_lsn"])


def populate(client: redis.Redis, keys: int) -> None:
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        pipe.set(f"s:{i}", f"value-{i}" * (i % 5 + 1))
        if i % 7 == 0:
            pipe.pexpireat(f"s:{i}", FAR_MS + i)
    for i in range(60):
        width = 1500 if i % 20 == 0 else i + 1  # some collections need many chunks
        pipe.hset(f"h:{i}", mapping={f"f{j}": f"v{j}" for j in range(width)})
        pipe.rpush(f"l:{i}", *(f"e{j % 9}" for j in range(width)))
        pipe.sadd(f"set:{i}", *(f"m{j}" for j in range(width)))
        pipe.zadd(f"z:{i}", {f"m{j}": j / 7 for j in range(width)})
        if i % 3 == 0:
            for kind in ("h", "l", "set", "z"):
                pipe.pexpireat(f"{kind}:{i}", FAR_MS)
    pipe.execute()


def write_load(port: int, stop_flag: threading.Event, seed: int) -> int:
    """Mixed writes on keys in and out of the moving ranges until told to stop."""
    client = redis.Redis(port=port)
    rng = random.Random(seed)
    done = 0
    while not stop_flag.is_set():
        pipe = client.pipeline(transaction=False)
        for _ in range(20):
            i = rng.randrange(300)
            op = rng.randrange(9)
            if op == 0:
                pipe.incr(f"s:{i}:n")
            elif op == 1:
                pipe.rpush(f"l:{i % 60}", done)
            elif op == 2:
                pipe.hset(f"h:{i % 60}", f"w{done}", done)
            elif op == 3:
                pipe.delete(f"s:{i}", f"s:{i + 1}")  # often two partitions
            elif op == 4:
                pipe.set(f"t:{i}", done, px=150)  # expires during the test
            elif op == 5:
                pipe.mset({f"m:{i}": done, f"m:{i + 1}": done})
            elif op == 6:
                pipe.zincrby(f"z:{i % 60}", 1.5, f"m{i}")
            elif op == 7:
                pipe.srem(f"set:{i % 60}", f"m{i}")
            else:
                pipe.pexpire(f"s:{i}", 100_000_000)
            done += 1
        pipe.execute()
    return done


def snapshot(client: redis.Redis, keys: list[bytes]) -> dict[bytes, tuple[object, ...]]:
    """Type, absolute deadline and full contents of each key."""
    out: dict[bytes, tuple[object, ...]] = {}
    for key in keys:
        kind = client.type(key)
        if kind in (b"none", "none"):
            continue
        when = call(client, "PEXPIRETIME", key)
        value: object
        if kind == b"string":
            value = client.get(key)
        elif kind == b"hash":
            value = client.hgetall(key)
        elif kind == b"list":
            value = client.lrange(key, 0, -1)
        elif kind == b"set":
            value = sorted(client.smembers(key))
        else:
            value = client.zrange(key, 0, -1, withscores=True)
        out[key] = (kind, when, value)
    return out


@pytest.fixture
def two_servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    source, s_port = start_pgserver(tmp_path / "source")
    target, t_port = start_pgserver(tmp_path / "target")
    yield s_port, t_port
    stop(source)
    stop(target)


def test_dump_load_and_tail_copy_the_range_exactly_under_writes(
    two_servers: tuple[int, int],
) -> None:
    s_port, t_port = two_servers
    source, target = redis.Redis(port=s_port), redis.Redis(port=t_port)
    populate(source, 3000)
    stop_flag = threading.Event()
    writers = [
        threading.Thread(target=write_load, args=(s_port, stop_flag, seed)) for seed in (1, 2)
    ]
    for writer in writers:
        writer.start()
    try:
        time.sleep(0.2)
        call(target, "TSR.IMPORTING", "ADD", MOVING)
        l0, dump_id = start_dump(source, MOVING, "CHUNK", "100")
        apply(target, parse_commands(read_dump(source, dump_id)))
        assert call(source, "TSR.DUMPDROP", dump_id) == 1
        tail = Tail(s_port, l0, MOVING)
        assert tail.header == b"TAIL %d" % l0
        lsns: list[int] = []
        catch_up_until = time.monotonic() + 1.0
        while time.monotonic() < catch_up_until:  # catch up while the writers go on
            for end, _ts, commands in tail.frames_until(0):
                lsns.append(end)
                apply(target, commands)
    finally:
        stop_flag.set()
        for writer in writers:
            writer.join()
    l1 = call(source, "TSR.FENCE", "ADD", MOVING)
    assert isinstance(l1, int)
    assert l1 >= lsns[-1]
    for end, _ts, commands in tail.frames_until(l1):
        lsns.append(end)
        for argv in commands:
            assert any(moving(key) for key in argv[1:2]), argv
        apply(target, commands)
    tail.close()
    assert lsns == sorted(set(lsns)), "frames come in LSN order, once each"
    # Imported keys stay invisible to clients until the move commits.
    assert target.dbsize() == 0
    assert target.keys("*") == []
    assert target.randomkey() is None
    call(source, "TSR.FENCE", "DEL", MOVING)  # roll back, to read the source for comparison
    time.sleep(0.3)  # let the short TTLs of the load pass on both sides
    call(target, "TSR.IMPORTING", "DEL", MOVING)
    source_keys: list[bytes] = sorted(k for k in call(source, "KEYS", "*") if moving(k))
    target_keys: list[bytes] = sorted(call(target, "KEYS", "*"))
    assert len(source_keys) > 1000
    assert target_keys == source_keys
    assert snapshot(target, target_keys) == snapshot(source, source_keys)


def test_importing_keys_are_hidden_and_kept_until_the_import_ends(tmp_path: Path) -> None:
    proc, port = start_pgserver(tmp_path)
    try:
        client = redis.Redis(port=port)
        call(client, "TSR.IMPORTING", "ADD", MOVING)
        pipe = client.pipeline(transaction=False)
        for i in range(400):
            pipe.set(f"ttl:{i}", i, px=1000)  # loaded with the source's deadline
            pipe.set(f"plain:{i}", i)
        pipe.execute()
        ttl_keys = [f"ttl:{i}" for i in range(400)]
        plain_keys = [f"plain:{i}" for i in range(400)]
        shown = {k.encode() for k in plain_keys if not moving(k)}
        moving_ttl = sum(map(moving, ttl_keys))
        moving_plain = sum(map(moving, plain_keys))
        assert client.dbsize() == len(shown) + 400 - moving_ttl
        time.sleep(1.5)  # every deadline has passed; the active sweep ran many times
        assert client.dbsize() == len(shown)
        assert set(client.keys("*")) == shown
        assert set(client.scan_iter(count=1000)) == shown
        assert all(client.randomkey() in shown for _ in range(50))
        assert call(client, "TSR.COUNT", MOVING)[0] == moving_ttl + moving_plain
        assert client.info("stats")["expired_keys"] == 400 - moving_ttl
        _lsn, dump_id = start_dump(client, MOVING)
        read_dump(client, dump_id)
        assert list((tmp_path / "migration").glob("dump-*"))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, port = start_pgserver(tmp_path, port)
        client = redis.Redis(port=port)
        assert call(client, "TSR.IMPORTING", "LIST") == MOVING.encode()
        assert not list((tmp_path / "migration").glob("dump-*"))  # dumps die with a process
        with pytest.raises(redis.ResponseError, match="no dump"):
            call(client, "TSR.DUMPSTATUS", dump_id)
        assert call(client, "TSR.COUNT", MOVING)[0] == moving_ttl + moving_plain
        assert client.dbsize() == len(shown)
        call(client, "TSR.IMPORTING", "DEL", MOVING)  # commit: now they live by their TTLs
        wait_until(
            lambda: call(client, "TSR.COUNT", MOVING)[0] == moving_plain,
            5,
            "the imported keys past their deadline to expire",
        )
        assert client.dbsize() == len(shown) + moving_plain
    finally:
        stop(proc)


def test_fence_refuses_the_range_survives_sigkill_and_checkpoints(tmp_path: Path) -> None:
    args = ("--log-segment-mb", "1", "--keep-log-mb", "0", "--checkpoint-every-mb", "0")
    proc, port = start_pgserver(tmp_path, None, *args)
    try:
        client = redis.Redis(port=port)
        inside = next(f"k:{i}" for i in range(1000) if moving(f"k:{i}"))
        outside = next(f"k:{i}" for i in range(1000) if not moving(f"k:{i}"))
        client.mset({inside: "before", outside: "before"})
        end = log_end(client)
        l1 = call(client, "TSR.FENCE", "ADD", MOVING)
        assert l1 == end
        assert call(client, "TSR.FENCE", "ADD", MOVING) > l1

        def check_fenced(client: redis.Redis) -> None:
            for command in (("GET", inside), ("SET", inside, "x"), ("MSET", outside, 1, inside, 2)):
                with pytest.raises(redis.ResponseError) as refused:
                    call(client, *command)
                assert str(refused.value) == (
                    f"partition {pn(inside.encode())} is moving to another partition group; "
                    "refresh the partition map and retry"
                )
            assert client.get(outside) == b"before"  # the MSET was refused whole
            assert client.incr("counter")  # other partitions are served

        check_fenced(client)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, port = start_pgserver(tmp_path, port, *args)
        client = redis.Redis(port=port)
        check_fenced(client)
        # Push the fence's log record out of the kept log: only the checkpoint has it now.
        pipe = client.pipeline(transaction=False)
        for filler in [f"filler:{i}" for i in range(6000) if not moving(f"filler:{i}")]:
            pipe.set(filler, "x" * 1000)
        pipe.execute()
        assert client.bgsave()
        wait_until(
            lambda: not client.info("persistence")["checkpoint_in_progress"], 30, "a checkpoint"
        )
        assert int(client.info("persistence")["log_first_lsn"]) > l1
        with pytest.raises(redis.ResponseError, match="older than the oldest kept log"):
            Tail(port, 0, MOVING)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc, port = start_pgserver(tmp_path, port, *args)
        client = redis.Redis(port=port)
        check_fenced(client)
        assert call(client, "TSR.FENCE", "DEL", MOVING) in (b"OK", "OK", True)
        assert client.get(inside) == b"before"
    finally:
        stop(proc)


def test_tail_of_a_live_load_carries_every_write_of_the_range_in_order(
    tmp_path: Path,
) -> None:
    proc, port = start_pgserver(tmp_path)
    try:
        client = redis.Redis(port=port)
        lists = [f"list:{i}" for i in range(40)]
        tail = Tail(port, log_end(client), MOVING)
        rounds = 300
        for n in range(rounds):
            pipe = client.pipeline(transaction=False)
            for key in lists:
                pipe.rpush(key, n)
            pipe.mset({f"a:{n}": n, f"b:{n}": n})
            pipe.execute()
        final = log_end(client)
        seen: dict[bytes, list[int]] = {}
        msets: list[list[bytes]] = []
        for _end, _ts, commands in tail.frames_until(final):
            for argv in commands:
                if argv[0] == b"RPUSH":
                    seen.setdefault(argv[1], []).append(int(argv[2]))
                else:
                    msets.append(argv)
        tail.close()
        assert sorted(seen) == sorted(k.encode() for k in lists if moving(k))
        assert all(values == list(range(rounds)) for values in seen.values())
        wanted = [f"{p}:{n}".encode() for n in range(rounds) for p in "ab"]
        assert [key for argv in msets for key in argv[1::2]] == [k for k in wanted if moving(k)]
    finally:
        stop(proc)


def role(port: int, *args: str | int) -> None:
    """TSR.ROLE replies with the pgserver's log end LSN."""
    assert isinstance(call(redis.Redis(port=port), "TSR.ROLE", *args), int)


def test_delrange_deletes_exactly_the_range_on_master_and_slave(tmp_path: Path) -> None:
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    slave, s_port = start_pgserver(tmp_path / "s", None, "--managed")
    try:
        role(m_port, "MASTER", 1, 1)
        role(s_port, "SLAVE", 1, f"127.0.0.1:{m_port}")
        client = redis.Redis(port=m_port)
        populate(client, 20_000)
        big = next(f"big:{i}" for i in range(100) if moving(f"big:{i}"))
        for start in range(0, 200_000, 20_000):
            client.hset(big, mapping={f"f{j}": j for j in range(start, start + 20_000)})
        call(client, "TSR.IMPORTING", "ADD", "8000-8010")  # marks reach the slave
        call(client, "TSR.FENCE", "ADD", "8100,8102")
        before = {k for k in client.keys("*") if not moving(k)}
        in_range = call(client, "TSR.COUNT", MOVING)[0]
        assert call(client, "TSR.DELRANGE", MOVING) == in_range
        assert call(client, "TSR.DELRANGE", MOVING) <= in_range
        worst = 0.0
        while True:
            started = time.perf_counter()
            status = as_dict(call(client, "TSR.DELRANGE", "STATUS"))
            worst = max(worst, time.perf_counter() - started)
            if status[b"pending_keys"] == 0 and status[b"ranges"] == b"":
                break
            time.sleep(0.002)
        assert call(client, "TSR.COUNT", MOVING)[0] == 0
        assert set(client.keys("*")) == before
        assert worst < 0.25, f"a client waited {worst * 1000:.0f} ms during DELRANGE"
        # Each tick deletes about 1.5 ms worth (plus its DEL's logging); generous for CI.
        longest = float(migration_info(m_port)["delrange_longest_tick_ms"])
        assert 0 < longest < 50, f"a DELRANGE tick took {longest:.1f} ms"
        reader = redis.Redis(port=s_port)
        call(reader, "READONLY")
        wait_until(
            lambda: reader.info("replication")["applied_lsn"] >= log_end(client),
            10,
            "the slave to apply the deletions",
        )
        assert set(reader.keys("*")) == before
        assert reader.dbsize() == client.dbsize()
        marks = migration_info(s_port)
        assert marks["importing_ranges"] == "8000-8010"
        assert marks["fenced_ranges"] == "8100,8102"
        fenced_key = next(f"k:{i}" for i in range(100_000) if pn(f"k:{i}".encode()) == 8102)
        with pytest.raises(redis.ResponseError, match="partition 8102 is moving"):
            reader.get(fenced_key)
    finally:
        stop(master)
        stop(slave)


def test_dump_of_a_million_keys_does_not_stall_clients(tmp_path: Path) -> None:
    proc, port = start_pgserver(tmp_path, None, "--checkpoint-every-mb", "0")
    try:
        client = redis.Redis(port=port)
        pipe = client.pipeline(transaction=False)
        for batch in range(1000):
            pipe.mset({f"key:{batch}:{i}": "x" * 100 for i in range(1000)})
            if batch % 50 == 49:
                pipe.execute()
        pipe.execute()
        assert client.dbsize() == 1_000_000
        started = time.perf_counter()
        l0, dump_id = start_dump(client, "0-8191")
        worst = time.perf_counter() - started
        assert l0 == log_end(client)
        deadline = time.monotonic() + 120
        while True:
            started = time.perf_counter()
            client.ping()
            worst = max(worst, time.perf_counter() - started)
            status = as_dict(call(client, "TSR.DUMPSTATUS", dump_id))
            if status[b"state"] != b"running":
                break
            assert time.monotonic() < deadline
            time.sleep(0.005)
        assert status[b"state"] == b"done"
        assert status[b"keys"] == 1_000_000
        assert status[b"bytes"] > 100_000_000
        # Generous bound for a loaded CI box, as for the checkpoint stall test.
        fork_ms = float(status[b"fork_ms"])
        assert worst < 0.25, f"a client waited {worst * 1000:.0f} ms (fork {fork_ms:.1f} ms)"
        assert call(client, "TSR.DUMPDROP", dump_id) == 1
        assert not list((tmp_path / "migration").glob("dump-*"))
    finally:
        stop(proc, timeout=30)


def load_frames(client: redis.Redis, frames: list[list[bytes]]) -> int:
    """Send a framed dump's frames as the migrator does (pipelined); returns the keys they
    count."""
    keys = 0
    for start in range(0, len(frames), 20):
        pipe = client.pipeline(transaction=False)
        for frame in frames[start : start + 20]:
            pipe.execute_command(*frame)  # type: ignore[no-untyped-call]
        for frame, reply in zip(frames[start : start + 20], pipe.execute(), strict=True):
            assert reply == int(frame[1])
            keys += reply
    return keys


def test_framed_dump_loads_into_master_and_slave_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    source, s_port = start_pgserver(tmp_path / "source")
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    slave, t_port = start_pgserver(tmp_path / "s", None, "--managed")
    try:
        role(m_port, "MASTER", 1, 1)
        role(t_port, "SLAVE", 1, f"127.0.0.1:{m_port}")
        src, target = redis.Redis(port=s_port), redis.Redis(port=m_port)
        populate(src, 3000)
        call(target, "TSR.IMPORTING", "ADD", MOVING)
        _l0, framed_id = start_dump(src, MOVING, "CHUNK", "100", "FRAMED", "20000")
        frames = parse_commands(read_dump(src, framed_id))
        # Plain strings in string blocks, every other key as commands.
        assert {frame[0] for frame in frames} == {b"TSR.LOAD", b"TSR.LOADSTRINGS"}
        keys = as_dict(call(src, "TSR.DUMPSTATUS", framed_id))[b"keys"]
        assert load_frames(target, frames) == keys > 1000
        reader = redis.Redis(port=t_port)
        call(reader, "READONLY")
        with pytest.raises(redis.ReadOnlyError, match="read only replica"):
            call(reader, *frames[0])
        wait_until(
            lambda: reader.info("replication")["applied_lsn"] >= log_end(target),
            10,
            "the slave to apply the load",
        )
        source_keys = sorted(k for k in call(src, "KEYS", "*") if moving(k))
        expected = snapshot(src, source_keys)
        assert snapshot(target, source_keys) == expected
        assert snapshot(reader, source_keys) == expected
        # The log holds the TSR.LOAD frames' commands and the TSR.LOADSTRINGS frames
        # themselves: a restart replays them.
        master.send_signal(signal.SIGKILL)
        master.wait()
        master, m_port = start_pgserver(tmp_path / "m", m_port, "--managed")
        role(m_port, "MASTER", 2, 0)
        assert snapshot(redis.Redis(port=m_port), source_keys) == expected
    finally:
        for proc in (source, master, slave):
            stop(proc)


def test_load_reply_waits_until_its_writes_are_committed(tmp_path: Path) -> None:
    master, m_port = start_pgserver(tmp_path / "m", None, "--managed")
    slave, s_port = start_pgserver(tmp_path / "s", None, "--managed")
    try:
        role(m_port, "MASTER", 1, 1)  # one slave must acknowledge every write
        role(s_port, "SLAVE", 1, f"127.0.0.1:{m_port}")
        client = redis.Redis(port=m_port)
        wait_until(lambda: client.info("replication")["connected_slaves"] == 1, 5, "the slave")
        blob = b"".join(encode_command([b"SET", b"load:%d" % i, b"v" * 50]) for i in range(300))
        slave.send_signal(signal.SIGSTOP)
        try:
            with socket.create_connection(("127.0.0.1", m_port), timeout=5) as sock:
                sock.sendall(encode_command([b"TSR.LOAD", b"300", blob]))
                sock.settimeout(0.5)
                with pytest.raises(TimeoutError):
                    sock.recv(100)  # executed, but not acknowledged by the quorum
                slave.send_signal(signal.SIGCONT)
                sock.settimeout(5)
                assert sock.recv(100) == b":300\r\n"
                # Acknowledged means logged on the slave.
                assert int(redis.Redis(port=s_port).info("persistence")["log_end_lsn"]) >= (
                    log_end(client)
                )
        finally:
            slave.send_signal(signal.SIGCONT)
        reader = redis.Redis(port=s_port)
        call(reader, "READONLY")
        wait_until(lambda: reader.get("load:299") == b"v" * 50, 5, "the slave to apply")
    finally:
        stop(master)
        stop(slave)


def test_a_dump_nobody_reads_any_more_is_dropped(tmp_path: Path) -> None:
    """A mover that died without TSR.DUMPDROP must not leave its dump (file and retained
    log) behind until a restart: once idle for --dump-idle-timeout, it is dropped."""
    proc, port = start_pgserver(tmp_path, None, "--dump-idle-timeout", "1.5")
    try:
        client = redis.Redis(port=port)
        client.mset({f"k{i}": "v" for i in range(100)})
        _lsn, abandoned = start_dump(client, "0-8191")
        _lsn, in_use = start_dump(client, "0-8191")
        assert read_dump(client, abandoned)
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # the mover of `in_use` keeps asking about it
            assert as_dict(call(client, "TSR.DUMPSTATUS", in_use))[b"state"] != b"failed"
            time.sleep(0.3)
        with pytest.raises(redis.ResponseError, match="no dump"):
            call(client, "TSR.DUMPSTATUS", abandoned)
        assert as_dict(call(client, "TSR.DUMPSTATUS", in_use))[b"state"] == b"done"
        files = sorted(p.name for p in (tmp_path / "migration").iterdir())
        assert files == [f"dump-{in_use.decode()}.keys", f"dump-{in_use.decode()}.resp"]
        client.close()
    finally:
        stop(proc)
