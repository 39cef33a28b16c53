"""Output folders that one run at a time writes, and what a killed run left behind.

A run holds an advisory lock (``fcntl.flock``) on ``.NAME.lock`` beside its output ``NAME``
(beside, because ``tokenize`` replaces the whole folder when done), so a second writer fails at
once instead of mixing its files with the first one's. Holding the lock, a run may remove the
temporary files and folders (``.NAME.XXXXXXXX.tmp``, see :mod:`ulmfit.files`) that a killed run
on the same output left: nobody else can be writing them.
"""
from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Iterable, Iterator

from .artefacts import CONFIG
from .errors import UlmfitError

# tempfile's names: the prefix given, 8 characters of [a-z0-9_], the suffix (see ulmfit.files)
_TEMP_PART = r"\.[a-z0-9_]{8}\.tmp"


def lock_path(out: Path) -> Path:
    return out.parent / f".{out.name}.lock"


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold the lock of ``out`` for the block, or fail at once naming the busy output.

    The lock file is removed on release; a run that opened the file just before it was removed
    notices (the path no longer leads to its file) and takes the new one instead.
    """
    path = lock_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise UlmfitError(f"{out}: another ulmfit run is writing it (it holds {path}); wait for it to end "
                              f"or choose another output") from None
        if _same_file(fd, path):
            break
        os.close(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def stale_temps(out: Path) -> list[Path]:
    """Temporary files and folders a killed run on ``out`` left: ``.NAME.XXXXXXXX.tmp`` beside it
    and, in a folder that ulmfit wrote (it has a config.json), ``.FILE.XXXXXXXX.tmp`` inside it."""
    beside = re.compile(rf"^\.{re.escape(out.name)}{_TEMP_PART}$")
    found = [p for p in _entries(out.parent) if beside.match(p.name)]
    if (out / CONFIG).is_file():
        inside = re.compile(rf"^\..+{_TEMP_PART}$")
        found += [p for p in _entries(out) if inside.match(p.name)]
    return sorted(found)


def _entries(folder: Path) -> Iterable[Path]:
    return folder.iterdir() if folder.is_dir() else ()


def remove_stale_temps(out: Path) -> None:
    """Remove what ``stale_temps`` finds (call it holding ``output_lock(out)``)."""
    for path in stale_temps(out):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        print(f"removed {path}, left by an interrupted run", file=sys.stderr)


def unknown_files(folder: Path, known: Iterable[str]) -> list[str]:
    """Names in ``folder`` that are not among ``known``: files a stage did not write."""
    allowed = set(known)
    return sorted(p.name for p in _entries(folder) if p.name not in allowed)
