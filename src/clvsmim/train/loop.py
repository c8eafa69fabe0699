"""The training loop both trainers share (:func:`clvsmim.train.trainer.train`, one model, and
:func:`clvsmim.train.stacked.train_stacked`, K models as one).

A *session* holds the model(s), optimizer and log; the loop only drives it: fetch step ``s``'s
batch in the background (:func:`~clvsmim.train.batches.prefetched`), ``session.step(s, batch)``,
``session.record(s + 1, scalars)`` (a log row, or ``None`` between rows), checkpoint every
``checkpoint_every`` steps and at the stop, and stop cleanly — after a checkpoint of the current
step — on SIGTERM (:class:`~clvsmim.train.runtime.StopOnSigterm`).
"""
from __future__ import annotations

from typing import Any, Callable

from clvsmim.train.batches import prefetched
from clvsmim.train.runtime import StopOnSigterm, stop_requested

__all__ = ["run_steps"]


def run_steps(session, fetch: Callable[[int], Any], stop: int, checkpoint_every: int, bar,
              callback: Callable[[int, Any], None] | None = None) -> int:
    """Run steps ``session.start .. stop - 1``; returns the step the run stopped at (``stop``, or
    earlier after a SIGTERM). ``callback(step, scalars)`` after every step; ``bar`` (tqdm) shows the
    loss (and learning rate) of each log row and is closed at the end."""
    if stop_requested():
        stop = session.start
    try:
        with StopOnSigterm():
            for s, batch in prefetched(fetch, range(session.start, stop)):
                scalars = session.step(s, batch)
                row = session.record(s + 1, scalars)
                if row is not None:
                    bar.set_postfix({k: f"{row[k]:.4f}" if k == "loss" else f"{row[k]:.2e}"
                                     for k in ("loss", "lr") if k in row})
                bar.update(1)
                if stop_requested():
                    stop = s + 1
                if (s + 1) % checkpoint_every == 0 or s + 1 == stop:
                    session.save(s + 1)
                if callback is not None:
                    callback(s + 1, scalars)
                if s + 1 == stop:
                    break
    finally:
        bar.close()
    return stop
