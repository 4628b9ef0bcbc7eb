"""The one error type of the data layer.

Every problem with a dataset on disk, an input handed to `write_dataset`, or a file
being imported (npz, vault) raises `DatasetError`. Its message always has the form

    <file>: field '<field>' expected <what was expected>, found <what was found>

e.g. ``steps/obs.npy: field 'obs' expected shape [N=1200, A=3, O=18] float32, found
[1200, 3] float32``, so that a user can tell which file to open and what to fix.
The parts are also available as attributes (`file`, `field`, `expected`, `found`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


class DatasetError(ValueError):
    """A dataset (or an import source) is malformed; the message says where and how."""

    def __init__(self, file: Any, field: str, expected: str, found: str, *, where: Any = None):
        self.file = str(file)
        self.field = str(field)
        self.expected = str(expected)
        self.found = str(found)
        self.where = None if where is None else str(where)
        msg = f"{self.file}: field '{self.field}' expected {self.expected}, found {self.found}"
        if self.where is not None:
            msg += f" (in {self.where})"
        super().__init__(msg)

    def __reduce__(self):  # picklable despite the keyword-only constructor
        return (_rebuild, (self.file, self.field, self.expected, self.found, self.where))


def _rebuild(file, field, expected, found, where):
    return DatasetError(file, field, expected, found, where=where)


def describe_shape(dims) -> str:
    """`[("N", 1200), ("A", 3)]` -> ``[N=1200, A=3]``; plain ints print bare."""
    parts = []
    for d in dims:
        if isinstance(d, tuple):
            parts.append(f"{d[0]}={d[1]}")
        else:
            parts.append(str(d))
    return "[" + ", ".join(parts) + "]"


def describe_array(arr) -> str:
    """``[1200, 3] float32`` for an array (or ``<type> object`` for a non-array)."""
    shape = getattr(arr, "shape", None)
    dtype = getattr(arr, "dtype", None)
    if shape is None or dtype is None:
        return f"a {type(arr).__name__}"
    return f"{describe_shape(list(shape))} {np.dtype(dtype).name}"


def short_exc(exc: BaseException, limit: int = 200) -> str:
    """A one-line description of an exception, for the 'found' part of a message."""
    text = " ".join(str(exc).split())
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
