"""Does mixed precision change the answer? The same short study in float32 and mixed precision.

Runs a profile (default: smoke, cifar_resnet20 and cifar_plain20, 3 seeds) twice through the
real pipeline, once with ``mixed_precision = "off"`` (float32) and once with ``"auto"`` (here:
mixed_bfloat16 on a CPU with AVX512_BF16/AMX, mixed_float16 on a GPU), everything else equal,
and prints each (model, seed)'s test accuracy under both, the paired difference per model with
its 95 % t-interval over seeds, and the seed-to-seed standard deviation in float32: the noise
the difference is to be read against. One JSON line, then a table.

    .venv/bin/python benchmarks/precision_check.py --seeds 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from pipeline import config as config_lib, local_runner, study_merge
from resnet_ablation.comparison import t_interval

PRECISIONS = ("off", "auto")


def run_study(profile: str, models: tuple[str, ...], seeds: int, precision: str,
              workdir: str) -> tuple[str, dict[tuple[str, int], float], float]:
    """Runs the study with `precision`; returns (policy used, test accuracy per (model, seed),
    seconds)."""
    base = config_lib.load_profile(profile)
    config = dataclasses.replace(
        base, models=models, seeds=seeds, pipeline_name=f"precision-check-{precision}",
        pipeline_root=os.path.join(workdir, precision),
        training=dataclasses.replace(base.training, mixed_precision=precision))
    started = time.perf_counter()
    local_runner.run(config)
    seconds = time.perf_counter() - started
    paths = study_merge.render_report(config.pipeline_root)
    with open(paths["json"]) as file:
        report = json.load(file)
    policy = ",".join(report["provenance"].get("precision", []))
    return policy, {(row["model"], row["seed"]): row["val_accuracy"] for row in report["rows"]}, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke")
    parser.add_argument("--models", default="cifar_resnet20,cifar_plain20")
    parser.add_argument("--seeds", type=int, default=3, help="at least 2")
    parser.add_argument("--workdir", default="/tmp/precision-check")
    args = parser.parse_args()
    models = tuple(args.models.split(","))
    outcome = {p: run_study(args.profile, models, args.seeds, p, args.workdir) for p in PRECISIONS}
    (policy_a, acc_a, sec_a), (policy_b, acc_b, sec_b) = outcome["off"], outcome["auto"]
    summary = {"profile": args.profile, "seeds": args.seeds, "policies": [policy_a, policy_b],
               "seconds": [round(sec_a, 1), round(sec_b, 1)], "models": {}}
    print(f"{'model':<16} {'seed':>4} {policy_a:>16} {policy_b:>16}")
    for model in models:
        keys = sorted(k for k in acc_a if k[0] == model and k in acc_b)
        for key in keys:
            print(f"{model:<16} {key[1]:>4} {acc_a[key]:>16.4f} {acc_b[key]:>16.4f}")
        diffs = [acc_b[k] - acc_a[k] for k in keys]
        interval = t_interval(diffs)
        noise = statistics.stdev(acc_a[k] for k in keys)
        summary["models"][model] = {"mean_difference": round(interval.estimate, 4),
                                    "ci95": [round(interval.low, 4), round(interval.high, 4)],
                                    "float32_seed_sd": round(noise, 4)}
        print(f"{model:<16} mean {policy_b} - {policy_a}: {interval.estimate:+.4f} (95 % CI "
              f"{interval.low:+.4f} .. {interval.high:+.4f}); float32 seed-to-seed sd {noise:.4f}")
    print(f"study wall time: {policy_a} {sec_a:.0f} s, {policy_b} {sec_b:.0f} s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
