"""Training checkpoints: atomic save, RNG capture/restore, and loading the backbone alone.

A checkpoint (``out_dir/checkpoint.pt``) is a plain dict of tensors and Python scalars, so it
loads with ``torch.load(weights_only=True)``:

``model``           state dict of the whole objective (encoder, heads, momentum encoder, ...)
``encoder``         state dict of ``objective.encoder`` alone (what the analyses load)
``model_config``    the encoder's :class:`~clvsmim.config.ModelConfig` as a dict (or ``None``)
``optimizer``       AdamW state dict
``scheduler``       LR scheduler state dict
``step``            number of optimizer steps done
``rng``             torch / numpy / python (/ cuda) generator states
``config``          the :class:`~clvsmim.config.TrainConfig` as a dict
``objective``       the objective's name
``log_window``      running sums of the not-yet-logged steps (exact log on resume)
``wall_time_s``     training time accumulated over all sessions
"""
from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from clvsmim.cache import save_torch_atomic as save_atomic  # noqa: F401  (the checkpoint writer)
from clvsmim.config import ModelConfig
from clvsmim.models import build_vit

CHECKPOINT_NAME = "checkpoint.pt"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint dict (tensors and plain Python values only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    return torch.load(path, map_location=map_location, weights_only=True)


def capture_rng_state() -> dict[str, Any]:
    """The global torch / numpy / python (and CUDA) generator states, as weights-only-safe values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    torch.set_rng_state(state["torch"].cpu())
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _to_lists(value: Any) -> Any:
    """Nested tuples -> nested lists (weights-only unpickling of long int tuples is fine either way)."""
    return [_to_lists(v) for v in value] if isinstance(value, (tuple, list)) else value


def _to_tuples(value: Any) -> Any:
    return tuple(_to_tuples(v) for v in value) if isinstance(value, (tuple, list)) else value


def model_config_from(checkpoint: dict[str, Any]) -> ModelConfig:
    """The encoder's :class:`ModelConfig` stored in a checkpoint."""
    raw = checkpoint.get("model_config")
    if raw is None:
        raise ValueError("checkpoint has no 'model_config': train with objective.model_config set "
                         "(or pass model_config= to train) so the backbone can be rebuilt")
    return ModelConfig(**raw)


def load_encoder(checkpoint_path: str | Path, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the ViT backbone of a training checkpoint (``build_vit``) and load its weights.

    Every parameter of the rebuilt ViT must be in the checkpoint; extra encoder entries that
    the plain ViT does not have (e.g. an objective-specific token) are ignored.
    """
    ckpt = load_checkpoint(checkpoint_path, map_location)
    encoder = build_vit(model_config_from(ckpt))
    missing, _unexpected = encoder.load_state_dict(ckpt["encoder"], strict=False)
    if missing:
        raise KeyError(f"{checkpoint_path}: encoder weights missing for {missing[:8]}"
                       f"{' ...' if len(missing) > 8 else ''}")
    return encoder.eval()


def load_objective_state(objective: nn.Module, checkpoint_path: str | Path,
                         map_location: str | torch.device = "cpu") -> int:
    """Load the whole objective state (incl. momentum encoder) into ``objective``; returns the step."""
    ckpt = load_checkpoint(checkpoint_path, map_location)
    objective.load_state_dict(ckpt["model"])
    return int(ckpt["step"])
