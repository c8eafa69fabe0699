"""The errors of :mod:`clvsmim.weights`: failed downloads and bad files, unreadable or
mismatched checkpoints. The command line turns each into one line (``clvsmim weights: error: …``)."""
from __future__ import annotations

from pathlib import Path


class DownloadError(RuntimeError):
    """A download could not be completed (network, HTTP error, an HTML page instead of a file)."""


class ChecksumError(DownloadError):
    """A file does not match its expected size / checksum. ``moved_to`` is where it went."""

    def __init__(self, message: str, *, expected: str | int | None = None, found: str | int | None = None,
                 moved_to: Path | None = None):
        super().__init__(message)
        self.expected, self.found, self.moved_to = expected, found, moved_to


class CheckpointError(RuntimeError):
    """A checkpoint cannot be read, recognised, converted or loaded into the architecture."""


class UnsafeCheckpointError(CheckpointError):
    """The file holds pickled Python objects and ``allow_pickle`` was not given."""
