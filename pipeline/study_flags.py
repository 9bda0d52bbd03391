"""The flags that choose a study, with one meaning wherever a study is started: ``ablation
run``, ``ablation compile`` and ``kubeflow/runner.py`` (``add_study_flags``), and the data
flags of ``ablation ingest`` (``add_data_flags``). ``config_from`` turns them into the
``PipelineConfig``: the profile, then every ``--set``, then the other flags; relative paths are
resolved from the working directory. Every bad value is a ``ConfigError`` of one line.
"""

from __future__ import annotations

import argparse
import os
import shlex

from pipeline import config as config_lib
from resnet_ablation.data_source import parse_data
from resnet_ablation.model_specs import SHORTCUT_OPTIONS


def positive(value: str) -> int:
    """An argparse type: a positive integer."""
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def add_shortcut_flag(command: argparse.ArgumentParser) -> None:
    command.add_argument("--shortcut", choices=SHORTCUT_OPTIONS,
                         help="the paper's shortcut option (Table 3) for residual nets (default: "
                              "B for ImageNet-style, A for CIFAR-style; plain nets have none)")


def add_data_flags(command: argparse.ArgumentParser, required: bool = False,
                   pipeline_root: bool = True) -> None:
    """--data, --image-size, --train-limit, --beam-args and (with `pipeline_root`)
    --pipeline-root."""
    command.add_argument("--data", required=required, help="tfds:NAME[:CONFIG] or imagefolder:PATH")
    command.add_argument("--image-size", type=positive, help="square size images are resized to")
    command.add_argument("--train-limit", type=positive, help="train on this many images only")
    if pipeline_root:
        command.add_argument("--pipeline-root", required=required,
                             help="pipeline root (pipeline outputs and ML Metadata)")
    command.add_argument("--beam-args", metavar='"ARGS"',
                         help='Beam pipeline arguments as one string, replacing the profile\'s, '
                              'e.g. --beam-args="--direct_running_mode=in_memory"')


def add_study_flags(command: argparse.ArgumentParser, pipeline_root: bool = True) -> None:
    """The profile, --set, the data flags, and the study's models, seeds and training flags."""
    command.add_argument("--profile", default="smoke",
                         help="a profile of pipeline/profiles by name (default smoke), or a path "
                              "to a .toml file of your own")
    command.add_argument("--set", dest="settings", action="append", metavar="KEY=VALUE",
                         help="any setting of the configuration, applied after the profile and "
                              "before the flags below; repeatable, e.g. --set "
                              "training.epochs=40 --set training.mixed_precision=off")
    add_data_flags(command, required=False, pipeline_root=pipeline_root)
    command.add_argument("--models", help="comma-separated model names, replacing the profile's")
    command.add_argument("--epochs", type=positive, metavar="N",
                         help="train every variant for N epochs (training.epochs)")
    command.add_argument("--seeds", type=positive, metavar="K",
                         help="train every variant with K seeds, from --first-seed (default 0) on")
    command.add_argument("--first-seed", type=int, metavar="N",
                         help="the first seed: run a shard of a study (merge with ablation "
                              "report)")
    add_shortcut_flag(command)
    command.add_argument("--validation-fraction", type=float, metavar="F",
                         help="hold F of train out as a validation split for per-epoch "
                              "validation")
    command.add_argument("--deterministic", action="store_true",
                         help="bitwise-reproducible training on one machine: TensorFlow's op "
                              "determinism and thread pools of a fixed size (--threads, else the "
                              "profile's intra_op_threads, else every core); slower")
    command.add_argument("--threads", type=positive, metavar="N",
                         help="TensorFlow's intra-op threads (inter-op: 1); default: "
                              "TensorFlow's")


def config_from(args: argparse.Namespace, base: config_lib.PipelineConfig | None = None
                ) -> config_lib.PipelineConfig:
    """`base` (default: the profile of --profile), then every --set, then the other flags the
    user gave; relative paths resolved from the working directory."""
    if base is None:
        base = config_lib.load_profile(args.profile)
    try:
        data = parse_data(args.data).spec if args.data is not None else None
    except ValueError as error:
        raise config_lib.ConfigError(f"--data: {error}") from None
    root = getattr(args, "pipeline_root", None)
    if root is not None and not root.strip():
        raise config_lib.ConfigError("--pipeline-root is empty: name a folder, e.g. "
                                     "--pipeline-root runs/NAME")
    if root and not config_lib.is_uri(root):
        root = os.path.abspath(os.path.expanduser(root))
    try:
        beam_args = tuple(shlex.split(args.beam_args)) if args.beam_args else None
    except ValueError as error:  # unbalanced quotes
        raise config_lib.ConfigError(f"--beam-args {args.beam_args!r}: {error}") from None
    base = config_lib.with_settings(base, getattr(args, "settings", None) or ())
    return config_lib.with_overrides(
        base, data=data, image_size=args.image_size, train_limit=args.train_limit,
        pipeline_root=root, beam_args=beam_args, models=_model_list(getattr(args, "models", None)),
        seeds=getattr(args, "seeds", None), first_seed=getattr(args, "first_seed", None),
        epochs=getattr(args, "epochs", None),
        shortcut=getattr(args, "shortcut", None),
        validation_fraction=getattr(args, "validation_fraction", None),
        **_determinism(getattr(args, "deterministic", False), getattr(args, "threads", None),
                       base.training))


def _model_list(models: str | None) -> tuple[str, ...] | None:
    """--models' value as names; ConfigError for an empty list or an empty name."""
    if models is None:
        return None
    names = tuple(name.strip() for name in models.split(","))
    if not all(names):
        raise config_lib.ConfigError(f"--models {models!r}: name one or more models, separated "
                                     f"by commas (e.g. cifar_resnet20,cifar_plain20)")
    return names


def _determinism(deterministic: bool, threads: int | None, training) -> dict:
    """The training overrides of --deterministic and --threads: op determinism, and thread
    pools of a size fixed in the configuration (--threads, else the profile's, else every core
    of this machine, whatever cores the process is pinned to), so two runs of the command on
    one machine give bitwise the same numbers."""
    overrides = {"intra_op_threads": threads}
    if deterministic:
        overrides = {"deterministic": True,
                     "intra_op_threads": threads or training.intra_op_threads or os.cpu_count()}
    return overrides
