"""The machine's attainable arithmetic peak, as TensorFlow reaches it: large square matrix
products in float32 and bfloat16 (oneDNN's GEMMs, AMX tiles where the processor has them), the
best rate over a few timed repeats. Training rates divided by this peak say how much of the
machine a net uses (README, Performance); a vendor's nominal peak would need the clock under
load, which a shared virtual machine does not tell.

Prints one JSON object on a line of its own, then a human line per precision.

    .venv/bin/python benchmarks/arithmetic_peak.py --size 4096 --repeats 5
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import components  # noqa: F401,I001  (oneDNN on before TensorFlow loads, as every run)
import tensorflow as tf

from components import hardware
from resnet_ablation import processor


def matmul_rate(size: int, dtype: tf.DType, products: int, repeats: int) -> float:
    """Best FLOP/s over `repeats` timings of `products` chained size x size products."""
    a = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 1)) / size ** 0.5, dtype)
    b = tf.cast(tf.random.stateless_normal((size, size), seed=(0, 2)) / size ** 0.5, dtype)

    @tf.function
    def chain(x):
        for _ in range(products):
            x = tf.linalg.matmul(x, b)
        return tf.reduce_sum(tf.cast(x[:1, :1], tf.float32))

    chain(a).numpy()  # trace and warm up
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        chain(a).numpy()
        best = min(best, time.perf_counter() - started)
    return 2 * size ** 3 * products / best


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096)
    parser.add_argument("--products", type=int, default=4, help="chained products per timing")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rates = {name: matmul_rate(args.size, dtype, args.products, args.repeats)
             for name, dtype in (("float32", tf.float32), ("bfloat16", tf.bfloat16))}
    result = {"cpu": hardware.describe_devices(), "cpu_flags": list(processor.speed_flags()),
              "onednn": hardware.onednn_enabled(), "tensorflow": tf.__version__,
              "size": args.size, "products": args.products, "repeats": args.repeats,
              **{f"{name}_gflops": round(rate / 1e9, 1) for name, rate in rates.items()}}
    print(json.dumps(result))
    print(f"{result['cpu']} [{' '.join(result['cpu_flags'])}], TensorFlow {tf.__version__}, "
          f"oneDNN {'on' if result['onednn'] else 'off'}")
    for name, rate in rates.items():
        print(f"{name}: {rate / 1e9:.0f} GFLOP/s ({args.size}x{args.size} products, best of "
              f"{args.repeats})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
