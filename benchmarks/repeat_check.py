"""How far a repeat run moves a study's numbers: two runs of the same (model, seed) compared.

Reads two pipeline roots or published shard folders (the committed run and its repeat, e.g.
``docs/results/cifar_cpu/runs/seed0`` and a root of ``ablation run --profile cifar_cpu --models
cifar_resnet20,cifar_plain20 --first-seed 0``) and, for every (model, seed) both hold, prints:

- whether every per-epoch number of the two histories is bitwise equal (losses, accuracies,
  learning rate; not the timings), and the first epoch where they differ;
- the largest per-epoch difference of Keras' running train loss, the validation accuracy and the
  clean training accuracy;
- the final test and training accuracy of each run and their difference, in points.

Runs of a non-``deterministic`` profile are not expected to be bitwise equal (TensorFlow's
multi-threaded kernels sum in varying order); the differences say by how much they vary, to be
read against the spread between seeds. One JSON line per (model, seed), then a table.

    .venv/bin/python benchmarks/repeat_check.py docs/results/cifar_cpu/runs/seed0 runs/repeat
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pipeline import study_merge
from resnet_ablation.contracts import EpochRecord

TIMINGS = {"epoch", "seconds", "images_per_second", "validation_seconds", "clean_train_seconds"}
COMPARED = tuple(f.name for f in dataclasses.fields(EpochRecord) if f.name not in TIMINGS)
"""The per-epoch numbers a bitwise repeat must reproduce: every EpochRecord field but the epoch
number and the timings."""


def _largest_difference(a_epochs, b_epochs, field: str) -> float | None:
    pairs = [(getattr(a, field), getattr(b, field)) for a, b in zip(a_epochs, b_epochs)]
    known = [abs(x - y) for x, y in pairs if x is not None and y is not None]
    return max(known) if known else None


def _points(accuracy: float | None) -> float | None:
    return None if accuracy is None else round(100 * accuracy, 2)


def compare(first, repeat) -> dict:
    """The comparison of two RunResults of one (model, seed)."""
    a, b = first.history.epochs, repeat.history.epochs
    differing = [x.epoch for x, y in zip(a, b)
                 if any(getattr(x, f) != getattr(y, f) for f in COMPARED)]
    row = {"model": first.history.model, "seed": first.history.seed,
           "epochs": [len(a), len(b)],
           "bitwise_equal": len(a) == len(b) and not differing,
           "first_differing_epoch": differing[0] if differing else None}
    for field in ("train_loss", "val_accuracy", "clean_train_accuracy"):
        row[f"max_abs_diff_{field}"] = _largest_difference(a, b, field)
    for split, name in (("eval", "test"), ("train", "train")):
        x, y = _points(first.accuracy(split)), _points(repeat.accuracy(split))
        row[f"{name}_accuracy"] = [x, y]
        row[f"{name}_diff_points"] = None if None in (x, y) else round(y - x, 2)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("first", help="pipeline root or shard folder of the committed run")
    parser.add_argument("repeat", help="pipeline root or shard folder of the repeat")
    args = parser.parse_args(argv)
    first = {r.key: r for r in study_merge.read_part(args.first).results}
    repeat = {r.key: r for r in study_merge.read_part(args.repeat).results}
    common = sorted(set(first) & set(repeat))
    if not common:
        parser.error(f"no (model, seed) in both: {sorted(first)} vs {sorted(repeat)}")
    rows = [compare(first[key], repeat[key]) for key in common]
    for row in rows:
        print(json.dumps(row))
    print(f"\n{'model':<16}{'seed':>5}  {'bitwise':<8}{'1st diff':>9}{'test a / b':>16}"
          f"{'Δ test':>8}{'train a / b':>16}{'Δ train':>9}{'max Δ val':>11}")
    for row in rows:
        test, train = row["test_accuracy"], row["train_accuracy"]
        print(f"{row['model']:<16}{row['seed']:>5}  {str(row['bitwise_equal']):<8}"
              f"{str(row['first_differing_epoch']):>9}{f'{test[0]} / {test[1]}':>16}"
              f"{str(row['test_diff_points']):>8}{f'{train[0]} / {train[1]}':>16}"
              f"{str(row['train_diff_points']):>9}"
              f"{_points(row['max_abs_diff_val_accuracy'])!s:>11}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
