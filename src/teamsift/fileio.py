"""Atomic file writes: a temporary file in the same directory, then one rename, so that a
reader never sees half a file and an interrupted write never destroys the old one.

A temporary is named after its target, the writing process and this host,
``.<name>.tmp-<pid>-<host>-<random>``. A process killed mid-write (SIGKILL, power loss)
cannot remove its temporary, so every write first removes the temporaries of its directory
whose writer is gone: ours by name, written on this host, by a process that no longer
exists. Anything else in the directory is left alone.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import socket
from pathlib import Path
from typing import Any, Callable

#: Temporaries and set-aside directories: .<target>.<kind>-<pid>-<host>-<random>
_OURS = re.compile(r"^\.(?P<target>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}(\.tmp)?$")


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def temporary_name(target: str, kind: str = "tmp") -> str:
    """The name of a temporary for `target` (kind "tmp": being written; "old": set aside while
    a new version is renamed into place), recognisable by `remove_stale_temporaries`."""
    return f".{target}.{kind}-{os.getpid()}-{_host()}-{secrets.token_hex(4)}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove the temporaries in `directory` left by writers of this host that no longer run;
    return what was removed. A set-aside old version whose target is missing (the writer died
    between the two renames of a replacement) is renamed back instead of removed."""
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = [entry for entry in os.scandir(directory) if entry.name.startswith(".")]
    except OSError:  # missing, unreadable: nothing of ours to clean
        return removed
    host = _host()
    for entry in entries:
        match = _OURS.match(entry.name)
        if match is None or match["host"] != host or _alive(int(match["pid"])):
            continue
        path = Path(entry.path)
        target = directory / match["target"]
        try:
            if match["kind"] == "old" and not (target.exists() or target.is_symlink()):
                os.replace(path, target)
                continue
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        except FileNotFoundError:  # another process cleaned it first
            continue
        except OSError:  # read-only or otherwise not ours to change: leave it
            continue
        removed.append(path)
    return removed


def atomic_write_bytes(path: str | os.PathLike, blob: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent)
    tmp = path.parent / (temporary_name(path.name) + ".tmp")
    try:
        with open(tmp, "xb") as handle:
            handle.write(blob)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_directory(target: str | os.PathLike, write: Callable[[Path], Any], *, overwrite: bool,
                    check: Callable[[Path], None] | None = None) -> Any:
    """Run `write(tmp)` in a fresh sibling temporary directory, then rename it to `target`
    and return what `write` returned. An existing `target` is replaced only with `overwrite`
    (after `check(target)`, which raises if it is not ours to replace): it is set aside, the
    new one renamed in, then the old one removed, so that at every moment one complete
    version is in place (a set-aside version whose writer died is renamed back by the next
    write, see `remove_stale_temporaries`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(target.parent)
    tmp = target.parent / temporary_name(target.name)
    tmp.mkdir()
    try:
        result = write(tmp)
        fsync_dir(tmp)
        if target.exists() or target.is_symlink():
            if not overwrite:
                raise FileExistsError(f"{target} appeared while writing (pass overwrite=True to replace it)")
            if check is not None:
                check(target)
            old = target.parent / temporary_name(target.name, "old")
            os.replace(target, old)
            try:
                os.replace(tmp, target)
            except BaseException:
                os.replace(old, target)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return result


def fsync_dir(path: str | os.PathLike) -> None:
    """Flush a directory's entries (renames) to disk, where the platform allows it."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
