"""Files written atomically, and JSON results cached next to the model they describe.

Every file the package writes for later reuse goes through :func:`write_atomic`: the content
is written to a temporary file in the same folder, flushed, and ``os.replace``-d into place, so
a crash at any point leaves the previous file or the new one, never a partial one (the
temporary file is removed when writing fails).
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Callable

import torch

__all__ = ["write_atomic", "write_text_atomic", "write_json_atomic", "save_torch_atomic", "json_safe",
           "cached_json"]


def write_atomic(path: str | os.PathLike, write: Callable[[IO], None], binary: bool = False) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, then move it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"newline": ""})) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return write_atomic(path, lambda f: f.write(text))


def write_json_atomic(path: str | os.PathLike, value: Any, **dumps_kwargs) -> Path:
    """``json.dumps(value, **dumps_kwargs)`` + newline, written to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(value, **dumps_kwargs) + "\n")


def save_torch_atomic(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj)`` to ``path`` atomically."""
    return write_atomic(path, lambda f: torch.save(obj, f), binary=True)


def json_safe(value: Any) -> Any:
    """``value`` with dict keys as strings, tuples and tensors / arrays as lists and non-finite
    floats as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (int, float)):  # torch.Tensor, numpy array / scalar
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def cached_json(path: str | os.PathLike, compute: Callable[[], Any]) -> Any:
    """``compute()`` cached as JSON at ``path`` (written atomically; a corrupt file is recomputed).

    Non-finite floats are stored as ``null`` (:func:`json_safe`).
    """
    path = Path(path)
    if path.is_file():
        try:
            return json.loads(path.read_text())
        except ValueError:
            path.unlink()
    value = json_safe(compute())
    write_json_atomic(path, value, allow_nan=False)
    return value
