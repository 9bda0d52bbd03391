"""What processor this is, from /proc/cpuinfo: its name, the flags that decide TensorFlow's CPU
kernels and precision, whether it computes in bfloat16.

Imports nothing but the standard library: the Trainer, the benchmarks and the PyTorch peer
(which has no TensorFlow) describe the machine they measured on with the same words.
"""

from __future__ import annotations

import os

CPUINFO = "/proc/cpuinfo"
# the flags that decide TensorFlow's CPU kernels (oneDNN's ISA) and the precision here
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")


def cpuinfo(key: str) -> str | None:
    """The value of the first `key` line of /proc/cpuinfo (None where there is none)."""
    if not os.path.exists(CPUINFO):
        return None
    with open(CPUINFO) as file:
        return next((line.split(":", 1)[1].strip() for line in file
                     if line.split(":", 1)[0].strip() == key), None)


def describe() -> str:
    """"CPU: <model name> (N cores)"."""
    return f"CPU: {cpuinfo('model name') or 'unknown model'} ({os.cpu_count()} cores)"


def speed_flags() -> tuple[str, ...]:
    """Which of ``SPEED_FLAGS`` this processor has."""
    flags = set((cpuinfo("flags") or "").split())
    return tuple(flag for flag in SPEED_FLAGS if flag in flags)


def has_bfloat16() -> bool:
    """Whether this CPU computes in bfloat16 natively (AVX512_BF16 or AMX-BF16)."""
    return bool({"avx512_bf16", "amx_bf16"} & set(speed_flags()))
