"""Pages: the rows a batch reads, gathered on the host, for data that stays on disk.

With the streaming placement (`train --data-placement stream`) the dataset never moves
to the device: the engine draws the items of every update on the device (the same draw
as the on-device placement, from the same keys), and a page is gathered for them on the
host from the memory-maps. A page is a small dataset in the learner's own layout, one
pseudo-episode q per drawn item, so the learner's gathering code (`gather_transitions`,
`gather_episodes`, `gather_windows`, SIT's individual trajectories) reads from the page
exactly what it would read from the whole dataset:

    unit         the page's rows for item q (R per item)              the learner's item
    step         row r and its next row in the episode (R = 2)        q·R
    episode      the whole episode from t = 0 (R = T_max)             q
    trajectory   the whole episode of (episode, source slot)          (q, source)
    window       span + 1 rows from the window's start row            q (page window_start[q] = q·R)

A pseudo-episode ends where its real episode ends (its length is min(R, the rows left)),
so `is_last`, `next_*` through `final_*`, and the padding masks come out the same; rows
past its end repeat its last row and are never read unmasked. Three bookkeeping arrays
map a page back to the dataset: `page_episode` [n] (the real episode), `page_row` [n] (the
real row of the page's first row) and `page_t` [n] (its step in the episode); the
gathering functions report real episodes, rows and steps through them.

Memory: memory-maps larger than `RESIDENT_BYTES` in all are read in bounded groups of rows
whose pages are given back after each group, so the process' memory stays flat however
large the dataset; smaller ones simply stay resident.

Which arrays a page holds, by name and shape (`PageLayout`): the dataset's step fields and
any learner array with one row per step ([N, ...]: e.g. SIT's r̂, a valuation's weights)
are gathered by row; `final_*` by episode; `window_start` by item; everything else (e.g.
observation statistics, action masks) is global and goes to the device once.
"""

from __future__ import annotations

import mmap
from typing import Any, NamedTuple

import numpy as np

#: Bookkeeping arrays of the whole dataset; a page has its own.
INDEX_FIELDS = ("episode_index", "episode_start", "episode_length")
PAGE_FIELDS = ("page_episode", "page_row", "page_t")


class PageLayout(NamedTuple):
    """Which of a learner's arrays a page gathers, and how."""

    steps: tuple[str, ...]  # [N, ...]: gathered by row
    finals: tuple[str, ...]  # [E, ...]: gathered by episode
    items: tuple[str, ...]  # per item ("window_start")
    globals: tuple[str, ...]  # the rest: not per row, sent once

    @classmethod
    def of(cls, arrays: dict, num_steps: int, num_episodes: int) -> "PageLayout":
        steps, finals, items, rest = [], [], [], []
        for name, value in arrays.items():
            if name in INDEX_FIELDS or name == "num_items":
                continue
            shape = np.shape(value) if hasattr(value, "shape") else None
            if name.startswith("final_"):
                finals.append(name)
            elif name == "window_start":
                items.append(name)
            elif shape is not None and len(shape) >= 1 and shape[0] == num_steps:
                steps.append(name)
            else:
                rest.append(name)
        return cls(tuple(steps), tuple(finals), tuple(items), tuple(rest))


def rows_per_item(unit: str, max_length: int, span: int | None = None) -> int:
    if unit == "step":
        return 2
    if unit in ("episode", "trajectory"):
        return max_length
    if unit == "window":
        if span is None:
            raise ValueError("unit 'window': the learner must declare its window's span (Learner.span) to be streamed")
        return span + 1
    raise ValueError(f"unit {unit!r}: no pages for it")


class Pager:
    """Builds pages from host arrays (memory-maps) for a learner's unit.

    Args:
        arrays: the learner's prepared arrays on the host (`to_device` under `on_host()`).
        starts: the dataset's episode start rows [E].
        lengths: the dataset's episode lengths [E].
        unit: the learner's unit.
        span: a window's span (unit "window").
    """

    def __init__(self, arrays: dict, starts: np.ndarray, lengths: np.ndarray, unit: str, span: int | None = None):
        self.arrays = arrays
        self.starts = np.asarray(starts, np.int64)
        self.lengths = np.asarray(lengths, np.int64)
        self.unit = unit
        num_steps = int(self.lengths.sum())
        self.layout = PageLayout.of(arrays, num_steps, len(self.starts))
        self.rows = rows_per_item(unit, int(self.lengths.max()), span)
        mapped = sum(int(getattr(arrays[n], "nbytes", 0)) for n in self.layout.steps + self.layout.finals
                     if _mmap_of(arrays[n]) is not None)
        self.bounded = mapped > RESIDENT_BYTES  # give pages back (else the maps stay resident)
        self.window_start = None
        if unit == "window":
            self.window_start = np.asarray(arrays["window_start"], np.int64)

    def row_bytes(self) -> int:
        """Bytes of one page row over the gathered step fields (for sizing prefetch)."""
        return sum(int(np.prod(self.arrays[n].shape[1:], dtype=np.int64)) * self.arrays[n].dtype.itemsize
                   for n in self.layout.steps)

    def page_bytes(self, items_per_update: int) -> int:
        return items_per_update * self.rows * max(1, self.row_bytes())

    # -- items → rows ------------------------------------------------------------------------
    def _first_rows(self, flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first real row [n], real episode [n]) of every item's pseudo-episode."""
        if self.unit == "step":
            episode = np.searchsorted(self.starts, flat, side="right") - 1
            return flat, episode
        if self.unit == "window":
            first = self.window_start[flat]
            return first, np.searchsorted(self.starts, first, side="right") - 1
        return self.starts[flat], flat

    def page(self, items) -> tuple[dict[str, np.ndarray], Any]:
        """The page for `items` (numpy, leading axes [L, ...]: one set of items per page),
        and the items indexing into it. Page arrays lead with [L]."""
        if self.unit == "trajectory":
            episode, source = (np.asarray(x, np.int64) for x in items)
            lead, shape = episode.shape[0], episode.shape[1:]
            flat = episode.reshape(lead, -1)
        else:
            items = np.asarray(items, np.int64)
            lead, shape = items.shape[0], items.shape[1:]
            flat = items.reshape(lead, -1)
        n = flat.shape[1]
        first, episode = self._first_rows(flat.reshape(-1))
        last = self.starts[episode] + self.lengths[episode] - 1
        offsets = np.arange(self.rows, dtype=np.int64)
        rows = np.minimum(first[:, None] + offsets[None, :], last[:, None])  # [L·n, R]
        length = np.minimum(self.rows, last - first + 1)

        page: dict[str, np.ndarray] = {}
        flat_rows = rows.reshape(-1)
        for name in self.layout.steps:
            values = gather_rows(self.arrays[name], flat_rows, self.bounded)
            page[name] = values.reshape((lead, n * self.rows) + values.shape[1:])
        for name in self.layout.finals:
            values = gather_rows(self.arrays[name], episode, self.bounded)
            page[name] = values.reshape((lead, n) + values.shape[1:])
        q = np.arange(n, dtype=np.int32)
        page["episode_index"] = np.broadcast_to(np.repeat(q, self.rows), (lead, n * self.rows)).copy()
        page["episode_start"] = np.broadcast_to(q * self.rows, (lead, n)).copy()
        page["episode_length"] = length.reshape(lead, n).astype(np.int32)
        page["page_episode"] = episode.reshape(lead, n).astype(np.int32)
        page["page_row"] = first.reshape(lead, n).astype(np.int64)
        page["page_t"] = (first - self.starts[episode]).reshape(lead, n).astype(np.int32)
        if self.unit == "window":
            page["window_start"] = page["episode_start"].copy()

        local = np.broadcast_to(q, (lead, n))
        if self.unit == "step":
            local = local * self.rows
        local = local.reshape((lead,) + shape).astype(np.int32)
        if self.unit == "trajectory":
            return page, (local, source.astype(np.int32))
        return page, local


#: Rows read from a memory-map between two releases of its pages. A read faults in the OS's
#: read-around window (64 KiB), not one row, so this bounds what a gather keeps resident.
GATHER_ROWS = 512
#: Memory-maps up to this size in all are left resident (nothing to bound: reading them
#: whole costs less than the data itself on the device); larger ones are read
#: `GATHER_ROWS` at a time and given back.
RESIDENT_BYTES = 64 * 2**20


def gather_rows(array, rows: np.ndarray, bounded: bool = True) -> np.ndarray:
    """array[rows]; `bounded` (memory-maps): read in sorted order, `GATHER_ROWS` at a time,
    giving the pages back after each, so that however large the file, a gather keeps a
    bounded part of it resident."""
    if not bounded or _mmap_of(array) is None:
        return np.take(array, rows, axis=0)
    order = np.argsort(rows, kind="stable")
    out = np.empty((len(rows),) + tuple(array.shape[1:]), array.dtype)
    for lo in range(0, len(rows), GATHER_ROWS):
        index = order[lo : lo + GATHER_ROWS]
        out[index] = array[rows[index]]
        release(array)
    return out


def release(array, rows: tuple[int, int] | None = None) -> None:
    """Tell the OS that the resident pages of a memory-mapped array (or of its `rows`
    lo … hi − 1) are not needed now (madvise DONTNEED): the process' memory stops counting
    them, and they are read again from the page cache or the disk when touched."""
    handle = _mmap_of(array)
    if handle is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        if rows is None:
            handle.madvise(mmap.MADV_DONTNEED)
            return
        row_bytes = int(np.prod(array.shape[1:], dtype=np.int64)) * array.dtype.itemsize
        base = int(getattr(array, "offset", 0)) % mmap.ALLOCATIONGRANULARITY
        start = base + rows[0] * row_bytes
        stop = min(len(handle), base + rows[1] * row_bytes)
        start -= start % mmap.PAGESIZE
        if stop > start:
            handle.madvise(mmap.MADV_DONTNEED, start, stop - start)
    except (OSError, ValueError):
        pass


def _mmap_of(array):
    seen = 0
    while array is not None and seen < 8:
        handle = getattr(array, "_mmap", None)
        if isinstance(handle, mmap.mmap):
            return handle
        array = getattr(array, "base", None)
        seen += 1
    return None
