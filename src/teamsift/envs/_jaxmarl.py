"""Quiet, lazy access to JaxMARL.

Importing JaxMARL prints "Importing submoduled environments..." to stdout, and its
MaBrax module swaps `sys.stdout`/`sys.stderr` for `os.devnull` while importing Brax and
then "restores" them to `sys.__stdout__`/`sys.__stderr__` (not to what they were), which
would undo an ordinary `contextlib.redirect_stdout`. `import_jaxmarl` therefore points
the `sys.__stdout__`/`sys.__stderr__` fallbacks at the sink too while importing, and
restores all four afterwards, so that `teamsift ... --json` keeps a clean stdout.

Constructing some JaxMARL environments (Overcooked v1, MaBrax) raises a
DeprecationWarning; `quiet_construct` silences those.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import sys
import warnings
from types import ModuleType
from typing import Any, Callable, Iterator


@contextlib.contextmanager
def _silenced() -> Iterator[None]:
    sink = io.StringIO()
    saved = (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)
    try:
        sys.__stdout__ = sink  # type: ignore[misc]
        sys.__stderr__ = sink  # type: ignore[misc]
        with contextlib.redirect_stdout(sink), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__ = saved  # type: ignore[misc]


def import_jaxmarl(module: str = "jaxmarl") -> ModuleType:
    """Import `module` (a `jaxmarl...` module) with its prints kept off stdout."""
    if module in sys.modules:
        return sys.modules[module]
    with _silenced():
        return importlib.import_module(module)


def quiet_construct(factory: Callable[..., Any], *args, **kwargs) -> Any:
    """Call `factory(*args, **kwargs)` (an environment constructor) without warnings or prints."""
    with _silenced():
        return factory(*args, **kwargs)
