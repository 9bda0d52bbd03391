"""A process-wide setting's effect on training speed: the Trainer's default against the setting.

oneDNN and op determinism are chosen once per process, so each measurement is its own process:
this script runs ``train_throughput.py`` alternately with the project's default and with the
other setting, ``--rounds`` times each, interleaved so machine drift hits both alike, and
prints the processor, each run's Trainer-path images/second and the ratio of the medians
(default over the other). Settings (``--compare``):

- ``onednn``: against ``TF_ENABLE_ONEDNN_OPTS=0`` (``components`` turns oneDNN on unless the
  variable is set);
- ``deterministic``: against ``--deterministic`` (TensorFlow's op determinism and thread pools
  fixed to every core, as ``ablation run --deterministic``);
- ``onednn_bf16_rewrite``: against float32 Keras with Grappler's oneDNN bfloat16 graph rewrite
  (``auto_mixed_precision_onednn_bfloat16``), the other way to train in bfloat16 on a CPU (give
  ``--precision auto`` or ``on`` so the default trains in Keras' mixed_bfloat16);
- ``one_inter_op_thread``: against ``TF_NUM_INTEROP_THREADS=1`` (TensorFlow runs one op at a
  time, each on the intra-op pool, instead of independent ops side by side);
- ``system_allocator``: against ``TF_ONEDNN_USE_SYSTEM_ALLOCATOR=1`` (oneDNN's tensors from
  the C library's allocator instead of TensorFlow's pooled one, whose lock can cost time);
- ``caller_thread``: against ``TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD=1`` (the thread that
  starts a oneDNN primitive runs one share of it instead of waiting for the pool).

Arguments after ``--`` go to train_throughput.py:

    .venv/bin/python benchmarks/setting_speedup.py --compare onednn --rounds 2 -- \\
        --model cifar_resnet20 --batch 128 --steps 10 --windows 3 --images 5120 --augment
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
INTER_OP_ENV = "TF_NUM_INTEROP_THREADS"
SYSTEM_ALLOCATOR_ENV = "TF_ONEDNN_USE_SYSTEM_ALLOCATOR"
CALLER_THREAD_ENV = "TF_ONEDNN_THREADPOOL_USE_CALLER_THREAD"


def environment_switch(variable: str, label: str, value: str) -> dict:
    """A comparison of the default (`variable` unset) against `variable`=`value`."""
    return {"default": ({variable: None}, []), label: ({variable: value}, [])}


COMPARISONS = {  # name: {setting: (environment overrides (None: unset), extra arguments)}
    "onednn": environment_switch(ONEDNN_ENV, "oneDNN off", "0"),
    "deterministic": {"default": ({}, []), "deterministic": ({}, ["--deterministic"])},
    "onednn_bf16_rewrite": {"default": ({}, []), "oneDNN bfloat16 rewrite": (
        {}, ["--precision", "off", "--onednn-bf16-rewrite"])},
    "one_inter_op_thread": environment_switch(INTER_OP_ENV, "1 inter-op thread", "1"),
    "system_allocator": environment_switch(SYSTEM_ALLOCATOR_ENV, "system allocator", "1"),
    "caller_thread": environment_switch(CALLER_THREAD_ENV, "caller thread in the pool", "1"),
}


def measure(environment: dict[str, str | None], extra: list[str],
            throughput_args: list[str]) -> dict:
    """One train_throughput.py run in a fresh process; its JSON result."""
    env = {key: value for key, value in os.environ.items() if key not in environment}
    env.update({key: value for key, value in environment.items() if value is not None})
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "train_throughput.py"),
                           *throughput_args, *extra], cwd=REPO, env=env, capture_output=True,
                          text=True)
    if done.returncode:
        raise SystemExit(f"train_throughput.py failed:\n{done.stderr[-3000:]}")
    return json.loads(next(line for line in done.stdout.splitlines() if line.startswith("{")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--compare", choices=COMPARISONS, required=True)
    parser.add_argument("--rounds", type=int, default=2, help="runs per setting (default 2)")
    args, rest = parser.parse_known_args()
    throughput_args = rest[1:] if rest[:1] == ["--"] else rest
    settings = COMPARISONS[args.compare]
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for round_ in range(args.rounds):
        for name in sorted(settings, reverse=round_ % 2 == 1):  # each setting first in turn
            result = measure(*settings[name], throughput_args)
            rates[name].append(result["pipeline_ips"])
            print(f"round {round_ + 1}, {name}: oneDNN {'on' if result['onednn'] else 'off'}, "
                  f"deterministic {result['deterministic']}, {result['precision']}, Trainer "
                  f"path {result['pipeline_ips']} img/s (windows {result['windows_pipeline_ips']})",
                  flush=True)
    default, other = (statistics.median(rates[name]) for name in settings)
    other_name = list(settings)[1]
    print(json.dumps({"compare": args.compare, "cpu": result["cpu"],
                      "cpu_flags": result["cpu_flags"], "tensorflow": result["tensorflow"],
                      "model": result["model"], "batch": result["batch"],
                      "precision": result["precision"], "ips": rates,
                      f"ratio_default_over_{args.compare}": round(default / other, 2)}))
    print(f"{result['cpu']} [{' '.join(result['cpu_flags'])}]: {result['model']} batch "
          f"{result['batch']} {result['precision']}: default {default:.1f} img/s, {other_name} "
          f"{other:.1f} img/s, default/{other_name} {default / other:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
