"""The PyTorch peer: the paper's CIFAR nets trained by a bare PyTorch CPU loop, images/second.

The same architecture as ``resnet_ablation.models`` for the ``cifar_*`` family (3x3 stem with 16
filters, three stages of 16/32/64 filters with n = (depth - 2) / 6 basic blocks, option-A
shortcuts, global average pooling, a dense layer; no shortcut at all for plain nets; 269,722
trainable parameters at 20 layers and 853,018 at 56, as ``resnet_ablation.models`` counts), SGD
with momentum 0.9 and weight decay 1e-4, cross-entropy, real CIFAR-10 train PNGs decoded and
normalised once and held in memory: the fastest a notebook gets, with no input pipeline cost.
Configurations: ``eager`` (float32, NCHW), ``channels_last`` (float32, NHWC memory format),
``bf16`` (channels_last with ``torch.autocast("cpu", torch.bfloat16)``), ``compile``
(channels_last under ``torch.compile``) and ``compile_bf16`` (both). Each configuration is
timed in windows of `--steps` steps after `--warmup` untimed steps; the median window is
reported. One JSON line per configuration, then a summary; with ``--trainer`` (the output of
``benchmarks/train_throughput.py`` for the same net and batch, run just before on the same
machine) also the ratio of the Trainer's images/second to the best configuration's in the
Trainer's precision (float32 ones against a float32 Trainer, bfloat16 ones against
mixed_bfloat16). The first line names the processor and its speed flags.

Not a project dependency: run it with any Python that has torch, numpy and Pillow, e.g.

    python3 -m venv /tmp/peer && /tmp/peer/bin/pip install torch numpy pillow
    /tmp/peer/bin/python benchmarks/pytorch_peer.py --depth 20 --residual --batch 128 \
        --trainer throughput-resnet20.log
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import statistics
import sys
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the peer's venv has torch, not this project installed
from resnet_ablation import processor  # noqa: E402  (standard library only: no TensorFlow)

CONFIGURATIONS = ("eager", "channels_last", "bf16", "compile", "compile_bf16")


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers; with `residual`, an option-A shortcut (subsample, zero-pad)."""

    def __init__(self, channels_in: int, channels: int, stride: int, residual: bool):
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
        self.residual, self.stride, self.missing = residual, stride, channels - channels_in

    def forward(self, x):
        y = self.bn2(self.conv2(functional.relu(self.bn1(self.conv1(x)))))
        if self.residual:
            skip = x[:, :, ::self.stride, ::self.stride]
            if self.missing:
                skip = functional.pad(skip, (0, 0, 0, 0, self.missing // 2,
                                             self.missing - self.missing // 2))
            y = y + skip
        return functional.relu(y)


def cifar_net(depth: int, residual: bool, num_classes: int = 10) -> nn.Module:
    blocks = (depth - 2) // 6
    layers: list[nn.Module] = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
    channels_in = 16
    for index, channels in enumerate((16, 32, 64)):
        for block in range(blocks):
            stride = 2 if index > 0 and block == 0 else 1
            layers.append(BasicBlock(channels_in, channels, stride, residual))
            channels_in = channels
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes)]
    return nn.Sequential(*layers)


def load_images(folder: pathlib.Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` train PNGs spread over the class folders, as normalised NCHW float32 + labels."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    per_class = -(-count // len(classes))
    images, labels = [], []
    for label, name in enumerate(classes):
        for path in sorted((folder / name).iterdir())[:per_class]:
            images.append(np.asarray(Image.open(path).convert("RGB"), np.float32) / 255.0)
            labels.append(label)
    array = np.stack(images[:count])
    array = (array - array.mean(axis=(0, 1, 2))) / array.std(axis=(0, 1, 2))
    return (torch.from_numpy(array).permute(0, 3, 1, 2).contiguous(),
            torch.tensor(labels[:count]))


def time_configuration(name: str, args, images: torch.Tensor, labels: torch.Tensor) -> list[float]:
    torch.manual_seed(0)
    model = cifar_net(args.depth, args.residual)
    memory_format = torch.contiguous_format if name == "eager" else torch.channels_last
    model = model.to(memory_format=memory_format)
    images = images.to(memory_format=memory_format)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    forward = torch.compile(model) if name.startswith("compile") else model
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if name.endswith("bf16")
                else contextlib.nullcontext())
    batches = len(images) // args.batch
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    step = 0

    def train_step():
        nonlocal step
        index = order[(step % batches) * args.batch:(step % batches + 1) * args.batch]
        step += 1
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = functional.cross_entropy(forward(images[index]), labels[index])
        loss.backward()
        optimizer.step()
        return loss

    model.train()
    for _ in range(args.warmup):
        train_step()
    rates = []
    for _ in range(args.windows):
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = train_step()
        float(loss.detach())
        rates.append(args.steps * args.batch / (time.perf_counter() - started))
    if args.profile_ops:
        print_op_profile(name, train_step, args.steps, args.profile_ops)
    return rates


def print_op_profile(name: str, train_step, steps: int, top: int) -> None:
    """`steps` more steps under torch.profiler: the `top` ops by self CPU time."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as profile:
        for _ in range(steps):
            loss = train_step()
        float(loss.detach())
    averages = sorted(profile.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in averages) / 1e6
    print(f"{name}: op time {total:.2f} s over {steps} steps", flush=True)
    for event in averages[:top]:
        seconds = event.self_cpu_time_total / 1e6
        print(f"  {event.key:<44} {seconds:8.3f} s  {100 * seconds / total:5.1f} %", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=20, help="6n + 2: 20, 32, 44, 56, 110")
    parser.add_argument("--residual", action="store_true", help="residual (else plain)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--windows", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--images", type=int, default=5120)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: its own)")
    parser.add_argument("--profile-ops", type=int, default=0, metavar="N",
                        help="after timing, profile --steps more steps per configuration and "
                             "print the N ops with the most self CPU time")
    parser.add_argument("--configurations", default=",".join(CONFIGURATIONS))
    parser.add_argument("--data", type=pathlib.Path,
                        default=REPO.parent / "shared/datasets/cifar10/png/train")
    parser.add_argument("--trainer", type=pathlib.Path,
                        help="train_throughput.py's output for the same net and batch")
    args = parser.parse_args()
    if (args.depth - 2) % 6:
        parser.error(f"--depth must be 6n + 2 (20, 32, 44, 56, 110), got {args.depth}")
    model = f"cifar_{'resnet' if args.residual else 'plain'}{args.depth}"
    trainer = trainer_result(args.trainer, model, args.batch) if args.trainer else None
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{processor.describe()} [{' '.join(processor.speed_flags())}], torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads", flush=True)
    images, labels = load_images(args.data, args.images)
    results = {}
    for name in args.configurations.split(","):
        rates = time_configuration(name, args, images, labels)
        results[name] = statistics.median(rates)
        print(json.dumps({"model": model, "configuration": name, "batch": args.batch,
                          "precision": precision_of(name), "cpu": processor.describe(),
                          "cpu_flags": list(processor.speed_flags()),
                          "torch": torch.__version__, "threads": torch.get_num_threads(),
                          "ips": round(results[name], 1),
                          "windows_ips": [round(r, 1) for r in rates]}), flush=True)
    best = max(results, key=results.get)
    print(f"{model} batch {args.batch}, torch {torch.__version__}: "
          + ", ".join(f"{k} {v:.0f} img/s" for k, v in results.items())
          + f"; best {best}")
    if trainer:  # the best PyTorch configuration in the Trainer's precision
        same = {name: ips for name, ips in results.items()
                if precision_of(name) == precision_of(trainer["precision"])}
        if not same:
            raise SystemExit(f"no configuration in the Trainer's precision {trainer['precision']} "
                             f"was measured: add one to --configurations")
        best = max(same, key=same.get)
        ratio = trainer["pipeline_ips"] / results[best]
        print(json.dumps({"model": model, "trainer_ips": trainer["pipeline_ips"],
                          "trainer_precision": trainer["precision"], "best_pytorch": best,
                          "best_pytorch_ips": round(results[best], 1),
                          "ratio_trainer_over_best_pytorch": round(ratio, 3)}))
        print(f"Trainer {trainer['pipeline_ips']:.0f} img/s ({trainer['precision']}) / best "
              f"PyTorch {results[best]:.0f} img/s ({best}) = {ratio:.2f}")
    return 0


def precision_of(name: str) -> str:
    """"bfloat16" for a bf16 configuration or Keras' mixed_bfloat16 policy, else "float32"."""
    return "bfloat16" if name.endswith(("bf16", "bfloat16")) else "float32"


def trainer_result(path: pathlib.Path, model: str, batch: int) -> dict:
    """The JSON line train_throughput.py printed into `path`; SystemExit naming the mismatch
    when it measured another net or batch size."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("{")]
    found = [json.loads(line) for line in lines if '"pipeline_ips"' in line]
    if not found:
        raise SystemExit(f"--trainer {path}: no train_throughput.py result line in it")
    result = found[-1]
    if (result["model"], result["batch"]) != (model, batch):
        raise SystemExit(f"--trainer {path} measured {result['model']} at batch "
                         f"{result['batch']}, not {model} at batch {batch}")
    return result


if __name__ == "__main__":
    raise SystemExit(main())
