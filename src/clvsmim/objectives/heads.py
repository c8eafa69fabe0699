"""The one MLP builder behind every projection / prediction head (MoCo v3 style)."""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, num_layers: int, last_bn: bool) -> nn.Sequential:
    """``num_layers`` bias-free linear layers; BN + ReLU between them (MoCo v3).

    With ``last_bn`` the output gets a BatchNorm without affine parameters (MoCo v3's
    projector); otherwise the last layer is a plain linear map (MoCo v3's predictor).
    Under DDP the trainer converts the BNs with ``nn.SyncBatchNorm.convert_sync_batchnorm``
    to match upstream (statistics over the global batch).
    """
    if num_layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got num_layers={num_layers}")
    layers: list[nn.Module] = []
    for i in range(num_layers):
        last = i == num_layers - 1
        d_in = in_dim if i == 0 else hidden_dim
        d_out = out_dim if last else hidden_dim
        layers.append(nn.Linear(d_in, d_out, bias=False))
        if not last:
            layers += [nn.BatchNorm1d(d_out), nn.ReLU(inplace=True)]
        elif last_bn:
            layers.append(nn.BatchNorm1d(d_out, affine=False))
    return nn.Sequential(*layers)
