"""Tessera's shared core: RESP codec, partition hashing, command metadata, errors, config."""

import glob
import os
import sys

__version__ = "0.1.0"


def _reach_compiled_runtime() -> None:
    """Put the checkout's top directory on the path when mypyc's shared runtime library is
    there (`make compiled`): a console script such as .venv/bin/tessera reaches the packages
    through the editable install, but not that directory, and every compiled module
    imports the library by its top-level name."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if root not in sys.path and glob.glob(os.path.join(root, "tessera__mypyc.*")):
        sys.path.append(root)


_reach_compiled_runtime()
