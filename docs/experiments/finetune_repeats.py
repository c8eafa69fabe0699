"""How much does one fine-tune decide? C10 and C11 with every fine-tune repeated (``eval.finetune_repeats``).

The book fine-tunes every model once (seed ``EVALUATION_SEED``) and the claims' SEs are paired over
the evaluation images: they cannot show the fine-tuning run's own randomness (head init, batch
order, augmentation). This re-reads the zoo's evaluations under a profile that repeats every
fine-tune (cached beside them, ``eval-<key>.repeats.json``; computed where missing) and prints, per
training seed, each model's run accuracies and the C10 / C11 verdicts with the runs' mean and the
``paired+runs`` SE, beside the one-run verdict.

    CLVSMIM_CACHE=... python docs/experiments/finetune_repeats.py --profile P.yaml --seeds 0 1 2 --out F.json

``P.yaml``: the zoo's profile with ``eval: {finetune_repeats: R}`` (same name, so the same zoo).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics

from clvsmim.claims import evaluate_claim
from clvsmim.claims.measure import model_names
from clvsmim.claims.verdict import Measurements
from clvsmim.config import load_profile, seed_profile
from clvsmim.train import zoo

CLAIMS = ("C10", "C11")


def claims_of(profile, names: dict[str, str], results: dict[str, dict]) -> dict[str, dict]:
    """C10 and C11 from ``results`` (zoo key -> evaluation) for the roles ``names`` (role -> zoo name)."""
    keys = {r: zoo.resolve(profile, n).key for r, n in names.items()}
    m = Measurements(evaluations={r: results[k] for r, k in keys.items() if k in results},
                     num_eval=int(profile.eval_data().num_eval), names=names)
    return {cid: (lambda c: {"verdict": c.verdict, "value": c.value, "se": c.se, "reason": c.reason})(
        evaluate_claim(cid, m)) for cid in CLAIMS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", required=True, help="the zoo's profile with eval.finetune_repeats > 1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--models", default="moco-S,simmim-S,random-simmim-S,moco-Ti,simmim-Ti",
                    help="the models whose fine-tunes are repeated (the others keep their one run)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = {"profile": args.profile, "seeds": {}}
    for seed in args.seeds:
        repeated = seed_profile(load_profile(args.profile), seed)
        once = dataclasses.replace(repeated, eval=dataclasses.replace(repeated.eval, finetune_repeats=1))
        names = model_names(repeated)
        wanted = sorted(set(names.values()))
        single = zoo.evaluations(once, only=wanted, jobs=1, missing="skip", progress=False)
        runs = {**single, **zoo.evaluations(repeated, only=args.models, jobs=args.jobs, missing="skip", progress=False)}
        name_of = {zoo.resolve(repeated, n).key: n for n in args.models.split(",")}
        models = {name_of[k]: [r["accuracy"] for r in ev["finetune_runs"]] for k, ev in runs.items()
                  if "finetune_runs" in ev}
        row = {"runs": models,
               "sd": {n: statistics.stdev(a) if len(a) > 1 else None for n, a in models.items()},
               "repeated": claims_of(repeated, names, runs), "single": claims_of(once, names, single)}
        out["seeds"][str(seed)] = row
        print(f"seed {seed}")
        for n, acc in models.items():
            sd = row["sd"][n]
            print(f"  {n:16s} " + " ".join(f"{100 * a:5.2f}" for a in acc)
                  + (f"  mean {100 * sum(acc) / len(acc):5.2f} sd {100 * sd:4.2f}" if sd is not None else ""))
        for cid in CLAIMS:
            a, b = row["single"][cid], row["repeated"][cid]
            fmt = lambda c: (f"{c['verdict']:9s} {100 * c['value']:+6.2f} ± {100 * c['se']:4.2f}"  # noqa: E731
                             if c["value"] is not None and c["se"] is not None else c["verdict"])
            print(f"  {cid}: one run {fmt(a)} | {len(next(iter(models.values()), [])) or 1} runs {fmt(b)}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
