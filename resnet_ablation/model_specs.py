"""The table of model variants: pure Python, importable without TensorFlow.

Every variant is a row: a family (ImageNet-style, paper Table 1, or CIFAR-style, paper
section 4.2), a block type, blocks and filters per stage, and whether the blocks have
shortcuts. ``resnet_ablation.models.build_model`` turns a row into a Keras model.

A residual net's shortcuts follow one of the paper's options (section 3.3, Table 3), chosen
when the model is built; ``shortcut_option`` validates a choice without TensorFlow.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Family = Literal["imagenet", "cifar"]
Block = Literal["basic", "bottleneck"]
Shortcut = Literal["A", "B", "C"]

BOTTLENECK_EXPANSION = 4
IMAGENET_FILTERS = (64, 128, 256, 512)
IMAGENET_STAGES: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: ("basic", (2, 2, 2, 2)),
    34: ("basic", (3, 4, 6, 3)),
    50: ("bottleneck", (3, 4, 6, 3)),
    101: ("bottleneck", (3, 4, 23, 3)),
    152: ("bottleneck", (3, 8, 36, 3)),
}
CIFAR_FILTERS = (16, 32, 64)
CIFAR_DEPTHS = (20, 32, 44, 56, 110)  # depth = 6n + 2, n blocks per stage

# Paper Table 3. Identity wherever a block keeps its shape, except in C; where the shape changes,
# A subsamples and zero-pads the channels (no parameters), B and C project (1x1 conv + BN).
# C projects in every block.
SHORTCUT_OPTIONS: tuple[Shortcut, ...] = ("A", "B", "C")
# The default: B as torchvision (and the paper's 50/101/152-layer nets), A as paper section 4.2.
DEFAULT_SHORTCUT: dict[Family, Shortcut] = {"imagenet": "B", "cifar": "A"}


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One variant of the family: everything ``build_model`` needs besides the data shape."""

    name: str
    family: Family
    depth: int
    block: Block
    blocks_per_stage: tuple[int, ...]
    filters_per_stage: tuple[int, ...]
    residual: bool

    @property
    def twin(self) -> str:
        """Name of the same network with shortcuts switched the other way."""
        prefix = "cifar_" if self.family == "cifar" else ""
        return f"{prefix}{'plain' if self.residual else 'resnet'}{self.depth}"

    @property
    def expansion(self) -> int:
        return BOTTLENECK_EXPANSION if self.block == "bottleneck" else 1


def _all_specs() -> dict[str, ModelSpec]:
    rows = [(("imagenet", depth) + IMAGENET_STAGES[depth] + (IMAGENET_FILTERS,))
            for depth in IMAGENET_STAGES]
    rows += [("cifar", depth, "basic", ((depth - 2) // 6,) * 3, CIFAR_FILTERS)
             for depth in CIFAR_DEPTHS]
    specs = {}
    for family, depth, block, blocks, filters in rows:
        for residual in (True, False):
            prefix = "cifar_" if family == "cifar" else ""
            name = f"{prefix}{'resnet' if residual else 'plain'}{depth}"
            specs[name] = ModelSpec(name, family, depth, block, blocks, filters, residual)
    return specs


MODEL_SPECS: dict[str, ModelSpec] = _all_specs()
MODEL_NAMES: tuple[str, ...] = tuple(MODEL_SPECS)


def get_spec(name: str) -> ModelSpec:
    """Returns the spec of `name`; raises ValueError naming the valid names otherwise."""
    try:
        return MODEL_SPECS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}") from None


def shortcut_option(name: str, shortcut: str | None = None) -> Shortcut:
    """The shortcut option model `name` is built with: `shortcut`, or when None its family's
    default (``DEFAULT_SHORTCUT``).

    Plain nets accept the same values and ignore them. Raises ValueError for an unknown name,
    or for a shortcut outside ``SHORTCUT_OPTIONS`` (naming them).
    """
    spec = get_spec(name)
    if shortcut is None:
        return DEFAULT_SHORTCUT[spec.family]
    if shortcut not in SHORTCUT_OPTIONS:
        raise ValueError(f"unknown shortcut option {shortcut!r}; valid options: "
                         f"{', '.join(SHORTCUT_OPTIONS)}, or None for the family default")
    return shortcut
