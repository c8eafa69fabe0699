"""Reading a checkpoint file onto the CPU, safely: safetensors, ``torch.load(weights_only=True)``,
and pickled files only with the explicit ``allow_pickle`` opt-in (unimportable classes become
inert placeholders)."""
from __future__ import annotations

import pickle
import types
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from clvsmim.weights.errors import CheckpointError, UnsafeCheckpointError


class _Placeholder(dict):
    """Stands in for a pickled class that cannot be imported (e.g. yacs' CfgNode)."""

    def __init__(self, *args, **kwargs):  # accept whatever the pickle passes
        try:
            super().__init__(*args, **kwargs)
        except (TypeError, ValueError):
            super().__init__()

    def __setstate__(self, state):
        if isinstance(state, dict):
            self.__dict__.update(state)
        else:
            self.__dict__["_state"] = state


def _lenient_pickle_module() -> types.ModuleType:
    """A ``pickle``-like module whose Unpickler replaces unimportable classes by placeholders."""
    made: dict[tuple[str, str], type] = {}

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            try:
                return super().find_class(module, name)
            except (ImportError, AttributeError):
                key = (module, name)
                if key not in made:
                    made[key] = type(name, (_Placeholder,), {"__module__": f"clvsmim_missing.{module}"})
                return made[key]

    mod = types.ModuleType("clvsmim_lenient_pickle")
    mod.Unpickler = Unpickler
    mod.load = lambda fh, **kw: Unpickler(fh, **kw).load()
    mod.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL", "Pickler",
                                                          "dump", "dumps", "loads")})
    return mod


def read_checkpoint(path: str | Path, allow_pickle: bool = False) -> Any:
    """Load a checkpoint file onto the CPU.

    ``.safetensors`` files are read with safetensors. Otherwise ``torch.load(weights_only=True)``
    is tried first; if the file holds pickled Python objects (e.g. SimMIM's yacs config) that
    fails and :class:`UnsafeCheckpointError` explains the opt-in: ``allow_pickle=True`` (CLI
    ``--allow-pickle``) re-reads it with ``weights_only=False`` — which can run code from the
    file, so only do it for files you trust (verified sha256). Classes that cannot be imported
    (yacs not installed) are replaced by inert placeholders.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: cannot read safetensors file (truncated or corrupt?): {exc}") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        msg = str(exc)
        if "weights only" not in msg.lower() and "weights_only" not in msg.lower():
            raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt?): "
                                  f"{msg.splitlines()[0] if msg else type(exc).__name__}") from exc
        if not allow_pickle:
            first = next((ln.strip() for ln in msg.splitlines() if "GLOBAL" in ln or "Unsupported" in ln), "")
            raise UnsafeCheckpointError(
                f"{path} holds pickled Python objects besides tensors ({first or 'unsupported global'}), which "
                "torch.load(weights_only=True) refuses. If you trust the file (e.g. an official SimMIM checkpoint "
                "with its yacs config; check it with `clvsmim weights verify`), opt in explicitly: "
                "load_checkpoint(path, allow_pickle=True) / load_pretrained(name, allow_pickle=True), or "
                "`--allow-pickle` on the command line. This loads with weights_only=False, which can execute "
                "code stored in the file.") from None
    except (RuntimeError, EOFError, OSError, ValueError, IndexError) as exc:
        raise CheckpointError(f"{path}: not a readable torch checkpoint (truncated or corrupt? size "
                              f"{path.stat().st_size} bytes): {str(exc).splitlines()[0] if str(exc) else exc!r}. "
                              "If it came from `clvsmim weights fetch`, run `clvsmim weights verify`.") from exc
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=_lenient_pickle_module())
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot read even with allow_pickle=True: {exc}") from exc
