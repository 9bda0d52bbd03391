"""The ``ablation`` command: one subcommand per task a user runs by hand.

Each subcommand imports TensorFlow and TFX only when it runs, so ``ablation --help`` is instant.
"""

from __future__ import annotations

import argparse
import pathlib
import sys


def _models(args: argparse.Namespace) -> int:
    from components import model_specs, models

    print(f"{'name':<18}{'family':<10}{'depth':>6}  {'block':<11}{'residual':<10}"
          f"{'classes':>8}{'trainable params':>18}")
    for name in model_specs.MODEL_NAMES:
        spec = model_specs.get_spec(name)
        classes, size = (1000, 224) if spec.family == "imagenet" else (10, 32)
        model = models.build_model(name, classes, (size, size, 3))
        print(f"{name:<18}{spec.family:<10}{spec.depth:>6}  {spec.block:<11}"
              f"{str(spec.residual).lower():<10}{classes:>8}{models.trainable_params(model):>18,}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from components import models

    model = models.build_model(args.name, args.num_classes, (args.input_size, args.input_size, 3))
    model.summary(line_length=110)
    print(f"{args.name}: {models.trainable_params(model):,} trainable parameters, "
          f"{model.count_params():,} in total ({args.num_classes} classes, "
          f"{args.input_size}x{args.input_size}x3 input)")
    return 0


def _gradients(args: argparse.Namespace) -> int:
    import numpy as np

    from components import models, plots
    from components.keras_lib import keras

    rng = np.random.default_rng(args.seed)
    images = rng.standard_normal((args.batch, args.input_size, args.input_size, 3), np.float32)
    labels = rng.integers(0, args.num_classes, args.batch)
    profiles = {}
    for name in args.names:
        keras.utils.set_random_seed(args.seed)
        model = models.build_model(name, args.num_classes, images.shape[1:])
        norms = [norm for _, norm in models.conv_gradient_norms(model, images, labels)]
        profiles[name] = norms
        print(f"{name}: {len(norms)} convolutions, gradient norm first {norms[0]:.3g}, "
              f"last {norms[-1]:.3g}, first/last {norms[0] / norms[-1]:.3g}, "
              f"min {min(norms):.3g}, max {max(norms):.3g}", flush=True)
    title = (f"Gradient norms at initialisation ({args.input_size}x{args.input_size}, "
             f"batch {args.batch}, seed {args.seed})")
    print(f"wrote {plots.plot_gradient_profiles(profiles, args.output, title)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from components.model_specs import MODEL_NAMES

    def model_name(value: str) -> str:
        if value not in MODEL_NAMES:
            raise argparse.ArgumentTypeError(
                f"unknown model {value!r}; valid names: {', '.join(MODEL_NAMES)}")
        return value

    def positive(value: str) -> int:
        if not value.isdigit() or int(value) < 1:
            raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
        return int(value)

    parser = argparse.ArgumentParser(
        prog="ablation", description="Residual vs plain networks: the He et al. (2015) ablation as a TFX pipeline.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("models", help="list every model variant with its parameter count"
                        ).set_defaults(func=_models)

    summary = commands.add_parser("summary", help="print a model's Keras summary and parameter counts")
    summary.add_argument("name", type=model_name)
    summary.add_argument("--num-classes", type=positive, default=1000)
    summary.add_argument("--input-size", type=positive, default=224)
    summary.set_defaults(func=_summary)

    gradients = commands.add_parser(
        "gradients", help="plot per-convolution gradient norms at initialisation (PNG)")
    gradients.add_argument("names", nargs="+", type=model_name, metavar="NAME")
    gradients.add_argument("--output", type=pathlib.Path, default=pathlib.Path("gradients.png"))
    gradients.add_argument("--input-size", type=positive, default=224)
    gradients.add_argument("--batch", type=positive, default=16)
    gradients.add_argument("--num-classes", type=positive, default=1000)
    gradients.add_argument("--seed", type=int, default=0)
    gradients.set_defaults(func=_gradients)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
