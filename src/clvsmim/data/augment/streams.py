"""The random streams of the augmentations: which stream number each view and each operation
draws from (:func:`clvsmim.rng.hash_uniform`).

One block of 16 streams per view, one offset per operation inside a view, so e.g. the crop of
view 1 and the crop of view 2 are independent. Changing a number changes every view drawn
with it (and so every trained model): these numbers are part of the recipe.
"""
from __future__ import annotations

# The first stream of each view's block (a MoCo view uses its block's first five).
MOCO_VIEW_STREAMS = (16, 32)  # view 1, view 2
SIMMIM_VIEW_STREAM = 48
MAE_VIEW_STREAM = 64
SIMMIM_MASK_STREAM = 80
MAE_MASK_STREAM = 96

# Offsets of the operations inside a view's block of streams.
CROP, JITTER, GRAY, BLUR, SOLARIZE = 0, 1, 2, 3, 4
