"""Optionally compile the hot modules with mypyc, in place (extension modules next to the .py).

Usage: python scripts/build_fast.py [--set NAME | --modules A,B] [--optional] [--if-needed]
       | --clean | --status

The compiled modules (`.so` files beside the sources) shadow the `.py` files on import;
the `.py` files stay the source of truth and the code runs unchanged without them. With
--optional a missing compiler or mypyc is not an error: the build is skipped and everything
stays pure Python. --clean removes every compiled module (do it, or rebuild, after editing
a compiled module: a stale .so would otherwise keep running the old code; `--status` and
tessera.compiled.stale_modules() tell which are stale).

Sets (cumulative; `all` is the default):
  core      tessera.resp, tessera.partition, tessera.keys (the codec and key hashing)
  pgserver  core + the pgserver's hot path (server loop, dispatcher, keyspace, commands, log)
  gateway   core + the gateway's hot path (server loop, command kinds, routing)
  all       pgserver + gateway
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tessera.compiled import (  # noqa: E402
    COMPILED_SETS,
    GROUP_NAME,
    build_problem,
    build_reason,
    compiled_modules,
    source_of,
    stale_modules,
)

BUILD_DIR = REPO / "build" / "mypyc"


def clean() -> int:
    removed = 0
    for path in compiled_modules(REPO):
        path.unlink()
        removed += 1
    shutil.rmtree(BUILD_DIR, ignore_errors=True)
    return removed


@contextlib.contextmanager
def output_to(path: Path) -> Iterator[None]:
    """Send this process's and its children's stdout and stderr (gcc's too) to `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with path.open("wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def build(modules: list[str]) -> None:
    from mypyc.build import mypycify
    from setuptools import setup

    paths = [str(source_of(name, REPO).relative_to(REPO)) for name in modules]
    os.chdir(REPO)
    clean()  # a shared runtime library from an earlier build must not linger
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    setup(
        name="tessera-compiled",
        ext_modules=mypycify(
            paths, opt_level="3", target_dir=str(BUILD_DIR / "c"), group_name=GROUP_NAME
        ),
        script_args=[
            "build_ext",
            "--inplace",
            "--build-temp",
            str(BUILD_DIR / "tmp"),
            "--build-lib",
            str(BUILD_DIR / "lib"),
        ],
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--set", choices=sorted(COMPILED_SETS), default="all")
    parser.add_argument("--modules", help="comma-separated modules instead of a set (trials)")
    parser.add_argument("--optional", action="store_true", help="skip quietly without a compiler")
    parser.add_argument("--clean", action="store_true", help="remove the compiled modules")
    parser.add_argument("--status", action="store_true", help="list compiled and stale modules")
    parser.add_argument(
        "--if-needed", action="store_true", help="build only if sources or the set changed"
    )
    args = parser.parse_args()
    if args.clean:
        print(f"removed {clean()} compiled modules")
        return 0
    if args.status:
        for path in compiled_modules(REPO):
            print(path.relative_to(REPO))
        for name in stale_modules(REPO):
            print(f"STALE (source newer than its compiled module): {name}")
        return 0
    why = build_problem()
    if why is not None:
        print(f"not compiling: {why}; the pure-Python modules will be used", file=sys.stderr)
        return 0 if args.optional else 1
    if args.if_needed and not args.modules and args.set == "all":
        reason = build_reason(REPO)
        if reason is None:
            return 0
        print(f"compiling the hot modules with mypyc ({reason}; 1-2 minutes)", flush=True)
    modules = args.modules.split(",") if args.modules else COMPILED_SETS[args.set]
    started = time.monotonic()
    log_path = BUILD_DIR.parent / "mypyc-build.log"
    try:
        with output_to(log_path):
            build(modules)
    except BaseException:
        print(f"mypyc build failed; its output: {log_path}", file=sys.stderr)
        print(log_path.read_text()[-4000:], file=sys.stderr)
        raise
    print(f"compiled {len(modules)} modules in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
