"""How hard are the synthetic shapes? ``finetune_untrained.py`` (an untrained encoder fine-tuned with
the book's recipe, i.e. supervised from scratch) on variants of the renderer's colours:

* ``--foreground-contrast`` (default 1.0): how far the foreground's dark / light texture colours are
  pulled towards their mean (1 = the drawn pair, 0 = one flat colour); the background's contrast is
  a data setting since session 15 (``data: {background_contrast: 0.0}`` in a profile, e.g.
  ``benchmarks/mini_candidates/mini3-bg0.yaml``);
* ``--figure-ground-shift S``: the background's mean colour is moved ``S`` away from the
  foreground's mean colour in every channel (towards mid-grey), so that the silhouette is a colour
  edge; by default both layers' colour pairs are centred near mid-grey and the shape is mostly a
  region of higher texture contrast.

The variants patch the renderer's private colour draw (an experiment, not a data setting: the data
cache key does not record them), so run each with its own ``CLVSMIM_CACHE``::

    CLVSMIM_CACHE=/tmp/fg04 python docs/experiments/data_difficulty.py --foreground-contrast 0.4 \
        -- --profile mini3 --variants moco --steps 150 600

Everything after ``--`` goes to ``finetune_untrained.py``.
"""
from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

import torch

import clvsmim.data.render as render


def patch_colours(foreground: float, shift: float | None) -> None:
    """Replace the renderer's texture-layer draw by one with this foreground contrast (and shift)."""
    draw = render._draw_texture_layers
    foreground_mean = {}

    def patched(seeds, stream, contrast, scale=1.0):
        is_foreground = stream == render._STREAM_FOREGROUND
        layers = draw(seeds, stream, foreground if is_foreground else contrast, scale)
        mean = (layers.dark + layers.light) / 2
        if is_foreground:  # render_chunk draws the foreground layer first
            foreground_mean["value"] = mean
        elif shift is not None:
            fg = foreground_mean["value"]
            target = torch.where(fg > 0.5, fg - shift, fg + shift)
            layers.dark = (layers.dark - mean + target).clamp(0, 1)
            layers.light = (layers.light - mean + target).clamp(0, 1)
        return layers

    render._draw_texture_layers = patched


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    ours, theirs = argv[:split], argv[split + 1:]
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--foreground-contrast", type=float, default=1.0)
    ap.add_argument("--figure-ground-shift", type=float, default=None)
    args = ap.parse_args(ours)
    patch_colours(args.foreground_contrast, args.figure_ground_shift)
    script = Path(__file__).with_name("finetune_untrained.py")
    sys.argv = [str(script)] + theirs
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
