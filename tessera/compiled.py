"""Which modules may be compiled with mypyc (scripts/build_fast.py), and which are.

A compiled module is an extension module next to its .py file and shadows it on import.
Nothing here is needed at run time except for reporting: the code is the same either way.
"""

from __future__ import annotations

import importlib.machinery
import shutil
import sys
import sysconfig
from pathlib import Path

_CORE = ["tessera.resp", "tessera.partition", "tessera.keys", "tessera.histogram"]
_PGSERVER = [
    "pgserver.server",
    "pgserver.context",
    "pgserver.keyspace",
    "pgserver.commands",
    "pgserver.commands.strings",
    "pgserver.durability",
    "pgserver.log",
    "pgserver.log_format",
    "pgserver.commands.keys",
    "pgserver.commands.hashes",
    "pgserver.commands.lists",
    "pgserver.commands.sets",
    "pgserver.commands.sorted_sets",
    "pgserver.zset",
    "pgserver.replication",
]
# gateway.blocking stays interpreted: its generic dataclasses (Release[T]...) fail at import
# when compiled (mypyc issue #827), and the hot path only reads `blocks.blocked_job[pn]`.
_GATEWAY = ["gateway.server", "gateway.commands", "gateway.routing"]

COMPILED_SETS: dict[str, list[str]] = {
    "core": _CORE,
    "pgserver": _CORE + _PGSERVER,
    "gateway": _CORE + _GATEWAY,
    "all": _CORE + _PGSERVER + _GATEWAY,
}

_PACKAGES = ("tessera", "pgserver", "gateway")

# mypyc's shared runtime library is named after this: tessera__mypyc.<ext suffix>.
GROUP_NAME = "tessera"


def build_problem() -> str | None:
    """Why the modules cannot be compiled here (no mypyc, compiler or headers), or None."""
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypyc is not installed (it ships with mypy)"
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None:
        return f"no C compiler ({cc})"
    include = sysconfig.get_paths()["include"]
    if not (Path(include) / "Python.h").exists():
        return f"no Python headers ({include}/Python.h)"
    return None


def source_of(module: str, root: Path) -> Path:
    path = root.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def compiled_modules(root: Path) -> list[Path]:
    """Every compiled module under `root` (the extension modules and mypyc's shared
    runtime library, which sits at the top level)."""
    found: list[Path] = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        found.extend(root.glob(f"*__mypyc{suffix}"))
        for package in _PACKAGES:
            found.extend((root / package).rglob(f"*{suffix}"))
    return sorted(set(found))


def extension_modules(root: Path) -> list[Path]:
    """The compiled modules under `root` without mypyc's shared runtime library."""
    return [path for path in compiled_modules(root) if "__mypyc" not in path.name]


def stale_modules(root: Path) -> list[str]:
    """Compiled modules whose source changed after they were built."""
    stale: list[str] = []
    for module in COMPILED_SETS["all"]:
        ext = extension_path(module, root)
        if ext.exists() and source_of(module, root).stat().st_mtime > ext.stat().st_mtime:
            stale.append(module)
    return stale


def build_reason(root: Path) -> str | None:
    """Why the compiled modules under `root` must be (re)built, or None if they are current."""
    stale = stale_modules(root)
    if stale:
        return f"sources changed: {', '.join(stale)}"
    expected = {extension_path(module, root) for module in COMPILED_SETS["all"]}
    built = set(extension_modules(root))
    if built != expected:
        return "not built" if not built else "the compiled set changed"
    if not list(root.glob(f"{GROUP_NAME}__mypyc.*")):
        return "mypyc's runtime library is missing"
    return None


def extension_path(module: str, root: Path) -> Path:
    """Where the compiled form of `module` is built (beside its source)."""
    source = source_of(module, root)
    return source.with_name(source.stem + importlib.machinery.EXTENSION_SUFFIXES[0])


def loaded_compiled() -> list[str]:
    """The imported modules that run compiled."""
    return sorted(
        name
        for name in COMPILED_SETS["all"]
        if (module := sys.modules.get(name)) is not None
        and not str(getattr(module, "__file__", "") or "").endswith(".py")
    )
