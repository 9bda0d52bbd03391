"""What a study costs beyond training: a finished pipeline root's wall time, split up.

Reads one or more pipeline roots (e.g. the shards of the cifar_cpu study) or published shard
folders (``docs/results/cifar_cpu/runs/seed1``) and prints, from ML Metadata (each component's
executor wall time in the newest run that executed it, not from the cache; a shard folder keeps
those of its newest run) and the Trainers' history.json:

- training: the Trainers' epochs without their validation passes (what ``fit`` spends on SGD);
- per-epoch evaluation: the validation passes inside the epochs and the clean train-error
  measurements after them (the Fig. 6 curves; ``train_eval_every`` / ``train_eval_examples``);
- Trainer outside fit: the rest of each Trainer component (start-up, reading the Transform
  graph, decoding the split into memory, predictions, layer responses, export);
- every other component (ExampleGen, StatisticsGen, SchemaGen, Transform, the Evaluators, the
  report, ...).

and the ratios the performance goal reads: (everything) / training, and (everything but the
per-epoch evaluation) / training. Histories written before validation times were recorded show
them as unknown. One JSON line, then a table.

    .venv/bin/python benchmarks/study_overhead.py runs/cifar_cpu/seed1 [more roots or folders]
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pipeline import run_metadata, study_merge


def executed_seconds(root: str) -> dict[str, float]:
    """Each component's wall time in the newest run that executed it (not from the cache)."""
    seconds = {}
    for _, _, components in run_metadata.pipeline_runs(run_metadata.open_store(root)):
        seconds.update({c.component: c.seconds for c in components if c.state == "ran"})
    return seconds


def split_root(root: str) -> dict[str, float | None]:
    """Seconds per part of one root's newest run (None: not recorded)."""
    part = study_merge.read_part(root)
    parts: dict[str, float | None] = collections.defaultdict(float)
    trainer_components = 0.0
    for component, seconds in (part.component_seconds if study_merge.is_shard_folder(root)
                               else executed_seconds(root)).items():
        if component.startswith("Trainer"):
            trainer_components += seconds
        else:
            kind = component.split(".")[0]
            parts[f"component {kind}"] += seconds
    epochs = [e for result in part.results for e in result.history.epochs]
    in_fit = sum(e.seconds for e in epochs)
    if all(e.validation_seconds is not None for e in epochs):
        validation = sum(e.validation_seconds for e in epochs)
        clean = sum(e.clean_train_seconds or 0.0 for e in epochs)
        parts["training"] = in_fit - validation
        parts["per-epoch evaluation"] = validation + clean
        parts["Trainer outside fit"] = trainer_components - in_fit - clean
    else:
        parts["training (with validation: not separable)"] = in_fit
        parts["Trainer outside fit and clean train error"] = trainer_components - in_fit
    return dict(parts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args()
    total: dict[str, float] = collections.Counter()
    for root in args.roots:
        for name, seconds in split_root(str(pathlib.Path(root).resolve())).items():
            total[name] += seconds
    wall = sum(total.values())
    training = total.get("training")
    result = {"roots": args.roots, "seconds": {k: round(v, 1) for k, v in sorted(total.items())},
              "wall_seconds": round(wall, 1)}
    if training:
        evaluation = total.get("per-epoch evaluation", 0.0)
        result["wall_over_training"] = round(wall / training, 3)
        result["wall_without_per_epoch_evaluation_over_training"] = round(
            (wall - evaluation) / training, 3)
    print(json.dumps(result))
    for name, seconds in sorted(total.items(), key=lambda item: -item[1]):
        share = f"{seconds / training:7.1%} of training" if training else ""
        print(f"{name:<48}{seconds:10.1f} s  {share}")
    print(f"{'all (sum of component wall times)':<48}{wall:10.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
