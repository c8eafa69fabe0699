"""One writer per run folder: an advisory lock held while a process trains into it.

Two processes training into the same folder (a ``zoo build`` beside a book chapter that builds
the same model, or two shells) would interleave ``log.csv`` and overwrite each other's
checkpoints. :func:`run_lock` takes an exclusive ``fcntl.flock`` on ``<folder>/.train.lock``
before a run reads or writes anything there; a second process gets :class:`RunBusyError`
naming the holder. The kernel drops the lock when its holder exits, however it exits, so a
killed run never leaves a stale lock. Where ``fcntl`` does not exist (Windows) the lock is a
no-op.
"""
from __future__ import annotations

import os
import socket
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

LOCK_NAME = ".train.lock"


class RunBusyError(RuntimeError):
    """Another process is training into this run folder."""


@contextmanager
def run_lock(*folders: str | os.PathLike) -> Iterator[None]:
    """Hold the run lock of every folder in ``folders`` (each created if missing) for the ``with``
    block. Raises :class:`RunBusyError` at once when another holder has one of them; the locks
    already taken are then released."""
    with ExitStack() as held:
        for folder in folders:
            held.enter_context(_folder_lock(Path(folder)))
        yield


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    if fcntl is None:  # pragma: no cover
        yield
        return
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "holder unknown"
            raise RunBusyError(f"{folder}: another process is training into this run folder ({holder}; lock "
                               f"{path}). Wait for it to finish, or stop it (SIGTERM checkpoints it) and run "
                               f"again to resume") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock
