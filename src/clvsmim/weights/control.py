"""The untrained control of the official checkpoints: the same ViT-B/16 architecture, randomly
initialised from a seed (never trained, never downloaded)."""
from __future__ import annotations

import torch

from clvsmim.weights.architecture import build_architecture
from clvsmim.weights.registry import get_entry

__all__ = ["CONTROL_ARCHITECTURE_OF", "random_control"]

#: The official checkpoint whose architecture the control copies (timm ``vit_base_patch16_224``).
CONTROL_ARCHITECTURE_OF = "moco_v3_vit_b"


def random_control(seed: int = 0) -> torch.nn.Module:
    """Untrained ViT-B/16 of the official MoCo v3 / MAE architecture, initialised from ``seed``
    (timm's init under a forked RNG: the caller's random state is untouched). Eval mode."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        model = build_architecture(get_entry(CONTROL_ARCHITECTURE_OF).architecture)
    return model.eval()
