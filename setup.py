"""Optional mypyc compilation for installs: `TESSERA_COMPILE=1 pip install .`.

Metadata lives in pyproject.toml; this file only adds the compiled modules listed in
tessera/compiled.py. Without TESSERA_COMPILE the package is pure Python as always. With it,
a missing mypyc, C compiler or Python headers falls back to pure Python with a warning
(TESSERA_COMPILE=required makes that an error). mypyc ships with mypy, which pip's isolated
build environment does not have: install mypy first and add --no-build-isolation.
For a development checkout, `make compiled` compiles in place instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tessera.compiled import COMPILED_SETS, GROUP_NAME, build_problem, source_of


def ext_modules() -> list[Any]:
    mode = os.environ.get("TESSERA_COMPILE", "")
    if mode in ("", "0"):
        return []
    problem = build_problem()
    if problem is not None:
        if mode == "required":
            raise SystemExit(f"TESSERA_COMPILE=required: {problem}")
        print(f"TESSERA_COMPILE: {problem}; installing pure Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    root = Path(__file__).resolve().parent
    paths = [str(source_of(m, root).relative_to(root)) for m in COMPILED_SETS["all"]]
    return list(mypycify(paths, opt_level="3", group_name=GROUP_NAME))


setup(ext_modules=ext_modules())
