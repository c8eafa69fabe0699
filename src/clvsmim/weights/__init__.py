"""Official checkpoints: registry, verified resumable downloads, format conversion, loading.

Public API::

    from clvsmim.weights import REGISTRY, fetch, verify, load_checkpoint, load_pretrained
    path = fetch("moco_v3_vit_b")                 # cached, resumable, sha256-verified (pinned on first use)
    vit = load_checkpoint(path)                   # format detected, architecture inferred, strict load
    vit = load_pretrained("simmim_vit_b", allow_pickle=True)   # fetch + load into the registry architecture
    enc, dec = load_mae_with_decoder()            # MAE encoder + MAEDecoder (F8)
    mae = load_mae_objective()                    # objectives.mae.MAE: reconstruct(), decoder_hidden_states()
    root = fetch_imagenette()                     # folder with train/ and val/

CLI: ``clvsmim weights list | fetch NAME | verify [NAME|PATH] | inspect PATH | imagenette``.

Modules, in the order a checkpoint travels: :mod:`~clvsmim.weights.registry` (what exists, where),
:mod:`~clvsmim.weights.download` (the verified local file) with :mod:`~clvsmim.weights.transfer`
(resumable HTTP) and :mod:`~clvsmim.weights.pins` (sha256 pins, the lock file
``$CLVSMIM_WEIGHTS_LOCK``), :mod:`~clvsmim.weights.archive` (Imagenette, safe extraction);
:mod:`~clvsmim.weights.reading` (safe reading), :mod:`~clvsmim.weights.convert` (the formats),
:mod:`~clvsmim.weights.architecture` (which backbone), :mod:`~clvsmim.weights.load` (strict
loading), :mod:`~clvsmim.weights.mae_decoder` (F8's MAE decoder); :mod:`~clvsmim.weights.errors`.
"""
from __future__ import annotations

from clvsmim.weights.architecture import build_architecture, infer_architecture
from clvsmim.weights.archive import fetch_imagenette, safe_extract
from clvsmim.weights.convert import CONVERTERS, convert, detect_format
from clvsmim.weights.download import cached_path, fetch, verify
from clvsmim.weights.errors import CheckpointError, ChecksumError, DownloadError, UnsafeCheckpointError
from clvsmim.weights.load import load_checkpoint, load_pretrained, load_state_dict_strict
from clvsmim.weights.mae_decoder import (MAE_DECODER_KEYS, load_mae_decoder, load_mae_objective, load_mae_with_decoder,
                                         mae_decoder_config, mae_decoder_state_dict)
from clvsmim.weights.pins import lock_path, read_lock
from clvsmim.weights.reading import read_checkpoint
from clvsmim.weights.registry import (DATASETS, HEADS_BY_DIM, IMAGENETTE, REGISTRY, Architecture, WeightEntry, all_entries,
                                      get_entry)

__all__ = [
    "Architecture", "WeightEntry", "REGISTRY", "DATASETS", "IMAGENETTE", "HEADS_BY_DIM", "all_entries", "get_entry",
    "fetch", "verify", "cached_path", "lock_path", "read_lock", "fetch_imagenette", "safe_extract",
    "DownloadError", "ChecksumError",
    "CONVERTERS", "CheckpointError", "UnsafeCheckpointError", "read_checkpoint", "detect_format", "convert",
    "infer_architecture", "build_architecture", "load_state_dict_strict", "load_checkpoint", "load_pretrained",
    "MAE_DECODER_KEYS", "mae_decoder_state_dict", "mae_decoder_config", "load_mae_decoder",
    "load_mae_with_decoder", "load_mae_objective",
]
