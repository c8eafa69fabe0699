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
See :mod:`clvsmim.weights.download` for the lock file (``$CLVSMIM_WEIGHTS_LOCK``) and
:mod:`clvsmim.weights.convert` for the formats.
"""
from __future__ import annotations

from clvsmim.weights.convert import (
    CONVERTERS,
    CheckpointError,
    UnsafeCheckpointError,
    build_architecture,
    convert,
    detect_format,
    infer_architecture,
    load_checkpoint,
    MAE_DECODER_KEYS,
    load_mae_decoder,
    load_mae_objective,
    load_mae_with_decoder,
    load_pretrained,
    load_state_dict_strict,
    mae_decoder_config,
    mae_decoder_state_dict,
    read_checkpoint,
)
from clvsmim.weights.download import (
    ChecksumError,
    DownloadError,
    cached_path,
    fetch,
    fetch_imagenette,
    lock_path,
    read_lock,
    safe_extract,
    verify,
)
from clvsmim.weights.registry import DATASETS, HEADS_BY_DIM, IMAGENETTE, REGISTRY, Architecture, WeightEntry, all_entries, get_entry

__all__ = [
    "Architecture", "WeightEntry", "REGISTRY", "DATASETS", "IMAGENETTE", "HEADS_BY_DIM", "all_entries", "get_entry",
    "fetch", "verify", "cached_path", "lock_path", "read_lock", "fetch_imagenette", "safe_extract",
    "DownloadError", "ChecksumError",
    "CONVERTERS", "CheckpointError", "UnsafeCheckpointError", "read_checkpoint", "detect_format", "convert",
    "infer_architecture", "build_architecture", "load_state_dict_strict", "load_checkpoint", "load_pretrained",
    "MAE_DECODER_KEYS", "mae_decoder_state_dict", "mae_decoder_config", "load_mae_decoder",
    "load_mae_with_decoder", "load_mae_objective",
]
