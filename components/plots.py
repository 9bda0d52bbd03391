"""Figures the project writes as PNG files (matplotlib's non-interactive Agg backend)."""

from __future__ import annotations

import pathlib
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def plot_gradient_profiles(profiles: Mapping[str, Sequence[float]], output: pathlib.Path,
                           title: str) -> pathlib.Path:
    """Plots one line per model: gradient norm (log scale) against convolution depth."""
    figure, axes = plt.subplots(figsize=(8, 4.5))
    for name, norms in profiles.items():
        style = "-" if "resnet" in name else "--"
        axes.plot(range(1, len(norms) + 1), norms, style, marker=".", label=name)
    axes.set_yscale("log")
    axes.set_xlabel("convolution layer (input → output)")
    axes.set_ylabel("‖∂loss/∂kernel‖₂")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend()
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output, dpi=120)
    plt.close(figure)
    return output
