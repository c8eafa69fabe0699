"""Worker of the DDP test: trains the toy objective under ``accelerate launch`` on CPU.

Usage (see tests/test_trainer.py): ``accelerate launch --multi_gpu --num_processes 2 ... ddp_worker.py OUT``.
Each rank writes ``OUT/state_rank{r}.pt`` with its world size and final objective state.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from test_trainer import ToyDataset, ddp_cfg, make_toy, toy_batch  # noqa: E402

from clvsmim.train.trainer import make_accelerator, set_threads, train  # noqa: E402


def main(out_dir: str) -> None:
    set_threads()
    accelerator = make_accelerator(cpu=True)
    if accelerator.num_processes != 2:
        raise SystemExit(f"expected 2 processes, the worker sees world size {accelerator.num_processes}")
    objective = make_toy()
    train(objective, ToyDataset(), ddp_cfg(), out_dir, accelerator=accelerator, progress=False, batch_fn=toy_batch)
    state = {k: v.detach().cpu() for k, v in objective.state_dict().items()}
    torch.save({"world_size": accelerator.num_processes, "state": state},
               Path(out_dir) / f"state_rank{accelerator.process_index}.pt")


if __name__ == "__main__":
    main(sys.argv[1])
