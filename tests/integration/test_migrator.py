"""The migrator with real pgservers: a move under a live write load compared key by key,
cancel while loading and while catching up, resume after the mover task was killed (in the
catch-up: exact resume from the target's marker; in the load: redo), and the command line
end to end, including a SIGKILLed run taken over from its state file."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import trio

from migrator import MoverConfig, MoverState, Progress, RangeMover
from tessera.errors import MigrationError
from tessera.partition import PartitionSet, parse_ranges, pn
from tests.procs import REPO, start_pgserver, stop

RANGES = "0-4095"
MOVING = PartitionSet(parse_ranges(RANGES))
FAR_MS = 4102444800123  # 2100-01-01
CONFIG = MoverConfig(info_interval_ms=100, progress_interval_ms=50, state_interval_ms=100)


def moving(key: bytes | str) -> bool:
    return pn(key.encode() if isinstance(key, str) else key) in MOVING


def call(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


def in_range(prefix: str, count: int = 1) -> list[str]:
    names = (f"{prefix}:{i}" for i in range(10_000))
    return [name for name, _ in zip((n for n in names if moving(n)), range(count), strict=False)]


def populate(client: redis.Redis, keys: int = 3000, big_string: bool = True) -> None:
    """Strings (some with TTLs), collections larger than a dump chunk, a multi-MB string."""
    pipe = client.pipeline(transaction=False)
    for i in range(keys):
        pipe.set(f"s:{i}", f"value-{i}" * (i % 5 + 1))
        if i % 7 == 0:
            pipe.pexpireat(f"s:{i}", FAR_MS + i)
        if i % 11 == 0:
            pipe.set(f"ttl:{i}", i, ex=100_000)
    for i in range(60):
        width = 1500 if i % 15 == 0 else i + 1  # 1500 elements: six chunks of 256
        pipe.hset(f"h:{i}", mapping={f"f{j}": f"v{j}" for j in range(width)})
        pipe.rpush(f"l:{i}", *(f"e{j % 9}" for j in range(width)))
        pipe.sadd(f"set:{i}", *(f"m{j}" for j in range(width)))
        pipe.zadd(f"z:{i}", {f"m{j}": j / 7 for j in range(width)})
        if i % 3 == 0:
            for kind in ("h", "l", "set", "z"):
                pipe.pexpireat(f"{kind}:{i}", FAR_MS)
    if big_string:
        pipe.set(in_range("big")[0], b"0123456789" * 250_000)  # SET + APPENDs in the dump
    pipe.execute()


def write_load(port: int, stop_flag: threading.Event, seed: int, errors: list[str]) -> None:
    """Writes in and out of the moving ranges (INCR, RPUSH: duplicates would show) until
    told to stop. Refusals of fenced partitions are expected; anything else is an error."""
    client = redis.Redis(port=port)
    rng = random.Random(seed)
    done = 0
    while not stop_flag.is_set():
        pipe = client.pipeline(transaction=False)
        for _ in range(20):
            i = rng.randrange(300)
            op = rng.randrange(9)
            if op == 0:
                pipe.incr(f"n:{i}")
            elif op == 1:
                pipe.rpush(f"l:{i % 60}", done)
            elif op == 2:
                pipe.hincrby(f"h:{i % 60}", f"w{i}", 1)
            elif op == 3:
                pipe.delete(f"s:{i}", f"s:{i + 1}")  # often two partitions
            elif op == 4:
                pipe.set(f"t:{i}", done, px=150)  # expires during the test
            elif op == 5:
                pipe.mset({f"m:{i}": done, f"m:{i + 1}": done})
            elif op == 6:
                pipe.zincrby(f"z:{i % 60}", 1.5, f"m{i}")
            elif op == 7:
                pipe.sadd(f"set:{i % 60}", f"w{done}")
            else:
                pipe.pexpire(f"s:{i}", 100_000_000)
            done += 1
        for reply in pipe.execute(raise_on_error=False):
            if isinstance(reply, Exception) and not str(reply).startswith("partition "):
                errors.append(repr(reply))
        time.sleep(0.002)


@contextmanager
def writers(port: int, count: int = 2) -> Iterator[list[str]]:
    stop_flag = threading.Event()
    errors: list[str] = []
    threads = [
        threading.Thread(target=write_load, args=(port, stop_flag, seed, errors))
        for seed in range(count)
    ]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.2)
        yield errors
    finally:
        stop_flag.set()
        for thread in threads:
            thread.join()
    assert errors == []


def snapshot(client: redis.Redis, keys: list[bytes]) -> dict[bytes, tuple[object, ...]]:
    """Type, absolute deadline and contents of each key."""
    out: dict[bytes, tuple[object, ...]] = {}
    for key in keys:
        kind = client.type(key)
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
        elif kind == b"zset":
            value = client.zrange(key, 0, -1, withscores=True)
        else:
            continue
        out[key] = (kind, when, value)
    return out


def range_snapshot(client: redis.Redis) -> dict[bytes, tuple[object, ...]]:
    return snapshot(client, sorted(k for k in call(client, "KEYS", "*") if moving(k)))


def assert_target_holds_exactly(target: redis.Redis, expected: dict[bytes, Any]) -> None:
    keys = sorted(call(target, "KEYS", "*"))
    assert [k for k in keys if not moving(k)] == [], "keys outside the ranges reached the target"
    assert keys == sorted(expected)
    assert snapshot(target, keys) == expected


def assert_target_clean(target: redis.Redis) -> None:
    assert call(target, "TSR.COUNT", RANGES)[0] == 0
    assert call(target, "TSR.IMPORTING", "LIST") == b""


def migration_info(client: redis.Redis) -> dict[str, Any]:
    return dict(client.info("migration"))


async def wait_for(condition: Any, timeout_s: float, what: str) -> None:
    """Poll a mover's progress (there is no event for "some bytes were loaded")."""
    for _ in range(int(timeout_s * 100)):
        if condition():
            return
        await trio.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    source, s_port = start_pgserver(tmp_path / "source")
    target, t_port = start_pgserver(tmp_path / "target")
    yield s_port, t_port
    stop(source)
    stop(target)


class Saved:
    """save_state: keeps every state it is given (the last one is what a new process gets)."""

    def __init__(self) -> None:
        self.states: list[MoverState] = []

    async def __call__(self, state: MoverState) -> None:
        self.states.append(state)

    @property
    def last(self) -> MoverState:
        return self.states[-1]


def mover_for(
    ports: tuple[int, int], state: MoverState | None = None, **config: Any
) -> tuple[RangeMover, Saved, list[Progress]]:
    saved, seen = Saved(), list[Progress]()
    mover = RangeMover(
        f"127.0.0.1:{ports[0]}",
        f"127.0.0.1:{ports[1]}",
        RANGES,
        CONFIG.model_copy(update=config),
        state=state,
        on_progress=seen.append,
        save_state=saved,
    )
    return mover, saved, seen


async def cut_over(mover: RangeMover) -> int:
    """The orchestrator's cutover: fence, wait for L1, close the tail (run() returns)."""
    l1 = await mover.fence_source()
    assert await mover.wait_applied(l1, 30)
    applied = await mover.close_tail()
    assert applied >= l1
    return l1


def compare_after_commit(source: redis.Redis, target: redis.Redis, min_keys: int = 1000) -> None:
    """With the target committed and the writers stopped: unfence the source only to read
    it, let the short TTLs of the load pass on both sides, then compare the ranges."""
    assert call(source, "TSR.FENCE", "DEL", RANGES) in (b"OK", True)
    time.sleep(0.4)
    expected = range_snapshot(source)
    assert len(expected) > min_keys
    assert_target_holds_exactly(target, expected)


# ------------------------------------------------------------------------------ the move


async def test_a_move_under_writes_copies_the_ranges_exactly(servers: tuple[int, int]) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source)
    mover, saved, seen = mover_for(servers)
    with writers(servers[0]):
        async with trio.open_nursery() as nursery:
            await nursery.start(mover.run)
            assert await mover.wait_caught_up(256 << 10, 60)
            await trio.sleep(1.0)  # follow the writers a while
            l1 = await cut_over(mover)
    assert mover.phase == "tail_closed"
    assert target.dbsize() == 0  # imported keys stay hidden until the commit
    await mover.commit_target()
    assert call(target, "TSR.IMPORTING", "LIST") == b""
    compare_after_commit(source, target)

    progress = mover.progress
    assert progress.keys_loaded == progress.keys_estimate  # exact once the dump is done
    assert progress.dump_bytes is not None
    assert progress.bytes_loaded == progress.dump_bytes > 2_500_000
    assert progress.commands_applied > 100
    assert progress.applied_lsn is not None
    assert progress.applied_lsn >= l1
    assert progress.error is None
    phases = [p.phase for p in seen]
    assert [p for i, p in enumerate(phases) if i == 0 or phases[i - 1] != p] == [
        "preparing",
        "loading",
        "catching_up",
        "tail_closed",
    ]
    assert any(p.lag_bytes is not None and p.lag_records >= 0 for p in seen)
    loading = next(s for s in saved.states if s.phase == "loading")
    assert loading.l0 is not None
    assert loading.dump_id is not None
    assert sum(s.phase == "catching_up" for s in saved.states) > 1  # applied_lsn saved on
    assert migration_info(source)["dumps"] == 0  # the dump was dropped

    # Cleanup of the source: it must be fenced (it is, again), then loses the ranges.
    call(source, "TSR.FENCE", "ADD", RANGES)
    await mover.cleanup_source()
    assert call(source, "TSR.COUNT", RANGES)[0] == 0
    assert call(source, "TSR.FENCE", "LIST") == b""
    assert mover.phase == "done"
    assert saved.last.phase == "done"


@pytest.mark.parametrize("frame_bytes", [1, 1 << 20])
async def test_a_load_in_frames_of_any_size_copies_exactly(
    servers: tuple[int, int], frame_bytes: int
) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source, 1500)
    mover, _saved, _seen = mover_for(servers, dump_frame_bytes=frame_bytes)
    async with trio.open_nursery() as nursery:
        await nursery.start(mover.run)
        assert await mover.wait_caught_up(0, 60)
        await cut_over(mover)
    await mover.commit_target()
    progress = mover.progress
    assert progress.keys_loaded == progress.keys_estimate
    assert progress.bytes_loaded == progress.dump_bytes
    compare_after_commit(source, target, min_keys=500)


async def test_a_target_holding_keys_of_the_ranges_is_refused(servers: tuple[int, int]) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source, 200, big_string=False)
    target.set(in_range("stray")[0], "x")
    mover, _saved, _seen = mover_for(servers)
    with pytest.raises(MigrationError, match="already holds 1 keys of partitions 0-4095"):
        await mover.run()
    assert call(target, "TSR.IMPORTING", "LIST") == b""
    assert mover.progress.error is not None


async def test_cleanup_refuses_an_unfenced_source(servers: tuple[int, int]) -> None:
    source = redis.Redis(port=servers[0])
    populate(source, 200, big_string=False)
    mover, _saved, _seen = mover_for(servers)
    async with trio.open_nursery() as nursery:
        await nursery.start(mover.run)
        assert await mover.wait_caught_up(0, 30)
        await mover.close_tail()
    with pytest.raises(MigrationError, match="does not fence 0-4095"):
        await mover.cleanup_source()
    assert call(source, "TSR.COUNT", RANGES)[0] > 0


# ------------------------------------------------------------------------------ cancel


async def test_cancel_while_loading_leaves_the_target_clean(servers: tuple[int, int]) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source)
    mover, saved, _seen = mover_for(servers, rate_mb_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(mover.run)
        await wait_for(lambda: mover.progress.bytes_loaded > 0, 30, "the load to start")
        assert mover.phase == "loading"
        await mover.cancel()  # run() returns
    assert mover.phase == "cancelled"
    assert saved.last.phase == "cancelled"
    assert_target_clean(target)
    assert migration_info(source)["dumps"] == 0


async def test_cancel_while_catching_up_and_fenced_gives_everything_back(
    servers: tuple[int, int],
) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source, big_string=False)
    mover, _saved, _seen = mover_for(servers)
    with writers(servers[0]):
        async with trio.open_nursery() as nursery:
            await nursery.start(mover.run)
            assert await mover.wait_caught_up(256 << 10, 60)
            await trio.sleep(0.3)
            await mover.fence_source()
            await mover.cancel()
    assert mover.phase == "cancelled"
    assert_target_clean(target)
    assert call(source, "TSR.FENCE", "LIST") == b""
    source.get(in_range("s")[0])  # the source serves the ranges again
    source.set(in_range("after")[0], 1)


# ------------------------------------------------------------------------------ resume


async def test_a_mover_killed_while_catching_up_is_resumed_exactly(
    servers: tuple[int, int],
) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source, big_string=False)
    first, saved, _seen = mover_for(servers)
    with writers(servers[0]):
        with trio.CancelScope() as scope:  # the task dies; the process would be the same
            async with trio.open_nursery() as nursery:
                await nursery.start(first.run)
                assert await first.wait_caught_up(256 << 10, 60)
                await trio.sleep(0.5)
                applied_before = first.state.applied_lsn
                scope.cancel()
        state = saved.last
        assert state.phase == "catching_up"
        await trio.sleep(0.5)  # the writers go on without a mover
        second, saved2, seen2 = mover_for(servers, state=MoverState.model_validate_json(
            state.model_dump_json()
        ))  # fmt: skip
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            assert await second.wait_caught_up(256 << 10, 60)
            await trio.sleep(0.3)
            await cut_over(second)
    assert second.state.redo_count == 0, "resumed from the marker, not copied again"
    assert any(p.note and "resuming the tail at LSN" in p.note for p in seen2)
    resumed_at = next(s for s in saved2.states if s.phase == "catching_up").applied_lsn
    assert applied_before is not None
    assert resumed_at is not None
    assert resumed_at >= applied_before
    await second.commit_target()
    compare_after_commit(source, target)


async def test_a_mover_killed_while_loading_copies_again(servers: tuple[int, int]) -> None:
    source, target = redis.Redis(port=servers[0]), redis.Redis(port=servers[1])
    populate(source)
    first, saved, _seen = mover_for(servers, rate_mb_s=1)
    with writers(servers[0]):
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                await nursery.start(first.run)
                await wait_for(lambda: first.progress.bytes_loaded > 0, 30, "the load to start")
                scope.cancel()
        state = saved.last
        assert state.phase == "loading"
        assert call(target, "TSR.COUNT", RANGES)[0] > 0  # a partial copy is there
        second, _saved2, _seen2 = mover_for(servers, state=state)
        async with trio.open_nursery() as nursery:
            await nursery.start(second.run)
            assert await second.wait_caught_up(256 << 10, 60)
            await trio.sleep(0.3)
            await cut_over(second)
    assert second.state.redo_count == 1
    assert migration_info(source)["dumps"] == 0  # the first dump was dropped too
    await second.commit_target()
    compare_after_commit(source, target)


# ------------------------------------------------------------------------------ the CLI


def migrator(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrator", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_the_command_line_moves_and_cuts_over(servers: tuple[int, int]) -> None:
    s_port, t_port = servers
    source, target = redis.Redis(port=s_port), redis.Redis(port=t_port)
    populate(source)
    expected = range_snapshot(source)
    addresses = ("--source", f"127.0.0.1:{s_port}", "--target", f"127.0.0.1:{t_port}")
    result = migrator(*addresses, "--range", "0-2047", "--range", "2048-4095", "--cutover")
    assert result.returncode == 0, result.stderr
    assert "the partition map must now send partitions 0-4095 to the target" in result.stdout
    assert f"done: 0-4095 moved from 127.0.0.1:{s_port} to 127.0.0.1:{t_port}" in result.stdout
    assert "loading 0-4095" in result.stderr
    assert "Traceback" not in result.stderr
    assert_target_holds_exactly(target, expected)
    assert call(target, "TSR.IMPORTING", "LIST") == b""
    assert call(source, "TSR.COUNT", RANGES)[0] == 0
    assert call(source, "TSR.FENCE", "LIST") == b""
    assert all(not moving(k) for k in call(source, "KEYS", "*"))


def test_the_command_line_fails_in_one_line(servers: tuple[int, int]) -> None:
    s_port, t_port = servers
    redis.Redis(port=t_port).set(in_range("stray")[0], "x")
    addresses = ("--source", f"127.0.0.1:{s_port}", "--target", f"127.0.0.1:{t_port}")
    result = migrator(*addresses, "--range", RANGES, "--cutover")
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert errors == [
        "migrator: error: the target already holds 1 keys of partitions 0-4095; refusing to "
        "load on top of them (if they are leftovers of an earlier move, delete them with "
        "TSR.DELRANGE on the target)"
    ]
    assert "Traceback" not in result.stderr
    # A cancel without a state file deletes nothing the target owns (it imports nothing).
    result = migrator(*addresses, "--range", RANGES, "--cancel")
    assert result.returncode == 2
    assert "does not import them all: they are not this move's" in result.stderr
    assert call(redis.Redis(port=t_port), "TSR.COUNT", RANGES)[0] == 1
    bad = migrator("--source", "nowhere", "--target", f"127.0.0.1:{t_port}", "--range", "1")
    assert bad.returncode == 2
    assert "bad address 'nowhere'" in bad.stderr


def test_a_sigkilled_command_line_run_is_taken_over_from_its_state_file(
    servers: tuple[int, int], tmp_path: Path
) -> None:
    s_port, t_port = servers
    source, target = redis.Redis(port=s_port), redis.Redis(port=t_port)
    populate(source, big_string=False)
    state_file = tmp_path / "move.json"
    args = [f"--source=127.0.0.1:{s_port}", f"--target=127.0.0.1:{t_port}"]
    args += [f"--range={RANGES}", f"--state-file={state_file}"]

    def phase() -> str | None:
        try:
            return str(json.loads(state_file.read_text())["phase"])
        except (OSError, ValueError):
            return None

    with writers(s_port):
        proc = subprocess.Popen(
            [sys.executable, "-m", "migrator", *args, "--follow"],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while phase() != "catching_up":
                assert time.monotonic() < deadline
                time.sleep(0.02)
            time.sleep(1.0)  # mid catch-up, with the writers going
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        # Taken over: catch up again from the state file, and stop there.
        result = migrator(*args)
        assert result.returncode == 0, result.stderr
        assert "caught up" in result.stdout
        assert phase() == "tail_closed"
    time.sleep(0.4)  # the short TTLs pass; the source no longer changes
    expected = range_snapshot(source)
    result = migrator(*args, "--cutover")
    assert result.returncode == 0, result.stderr
    assert phase() == "done"
    assert_target_holds_exactly(target, expected)
    assert call(source, "TSR.COUNT", RANGES)[0] == 0
    result = migrator(*args, "--cutover")  # nothing left to do
    assert result.returncode == 0
    assert "already done" in result.stdout


async def test_a_move_between_pgservers_that_require_a_password(tmp_path: Path) -> None:
    secret = ("--requirepass", "s3cret")
    source_proc, s_port = start_pgserver(tmp_path / "source", None, *secret)
    target_proc, t_port = start_pgserver(tmp_path / "target", None, *secret)
    try:
        source = redis.Redis(port=s_port, password="s3cret")
        target = redis.Redis(port=t_port, password="s3cret")
        populate(source, 300, big_string=False)
        wrong, _saved, _seen = mover_for((s_port, t_port), password="nope")
        with pytest.raises(MigrationError, match="refused AUTH: WRONGPASS") as refused:
            await wrong.run()
        assert "nope" not in str(refused.value)
        mover, _saved, _seen = mover_for((s_port, t_port), password="s3cret")
        async with trio.open_nursery() as nursery:
            await nursery.start(mover.run)
            assert await mover.wait_caught_up(0, 30)
            await cut_over(mover)
        await mover.commit_target()
        compare_after_commit(source, target, min_keys=100)
    finally:
        stop(source_proc)
        stop(target_proc)
