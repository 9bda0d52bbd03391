"""The ``ablation`` command: one subcommand per task a user runs by hand.

The top floor of the import graph: it drives the local runner and the artifact readers of this
package, the model family in ``components`` and, for ``compile``, ``kubeflow.runner``. Each
subcommand imports TensorFlow and TFX only when it runs, so ``ablation --help`` is instant.

Flags mean one thing everywhere: ``--pipeline-root`` is a pipeline root (outputs and ML
Metadata), ``--output`` the file or folder a command writes its product to, ``--image-size``
the square size images are resized to. Exit codes: 0 success, 1 a data or runtime error, 2 a
usage or configuration error, 130 interrupted (Ctrl-C); errors are one line on stderr, and
``--debug`` (or ``ABLATION_DEBUG=1``) shows the full traceback instead.
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import os
import pathlib
import signal
import sys
import threading

from pipeline import config as config_lib, study_flags
from resnet_ablation.data_source import SKIPPED_FILE
from resnet_ablation.model_specs import MODEL_NAMES


def _models(args: argparse.Namespace) -> int:
    from resnet_ablation import model_specs, models

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
    from resnet_ablation import models

    model = models.build_model(args.name, args.num_classes, (args.image_size, args.image_size, 3),
                               shortcut=args.shortcut)
    model.summary(line_length=110)
    print(f"{args.name}: {models.trainable_params(model):,} trainable parameters, "
          f"{model.count_params():,} in total ({args.num_classes} classes, "
          f"{args.image_size}x{args.image_size}x3 input)")
    return 0


def _gradients(args: argparse.Namespace) -> int:
    from resnet_ablation import diagnostics, plots

    batches, num_classes = diagnostics.image_batches(args.data_folder, args.batch, args.batches,
                                                     args.image_size)
    seeds = range(args.seeds)
    rate = args.learning_rate * args.batch / 128  # the paper's 0.1 at batch 128
    profiles = {}
    for name in args.names:
        profiles[name] = diagnostics.gradient_profile(
            name, num_classes, batches, seeds=seeds, steps=args.steps, learning_rate=rate)
        for stage, ratios in profiles[name].items():
            print(f"{name} {stage:<7}: {len(ratios)} convolutions, ‖g‖/‖W‖ first {ratios[0]:.3g}, "
                  f"last {ratios[-1]:.3g}, first/last {ratios[0] / ratios[-1]:.3g}, "
                  f"min {min(ratios):.3g}, max {max(ratios):.3g}", flush=True)
    profiles = {name: {"at initialisation": p["init"], f"after {args.steps} SGD steps": p["trained"]}
                for name, p in profiles.items()}
    title = (f"Relative gradient norms, {args.image_size}x{args.image_size}, mean over "
             f"{args.batches} batches of {args.batch} real images and {args.seeds} seeds")
    print(f"wrote {plots.plot_gradient_profiles(profiles, args.output, title)}")
    return 0


DATA_ARTIFACTS = (  # (component id, output key) printed by `ablation ingest`
    ("ImageExampleGen", "examples"), ("StatisticsGen", "statistics"),
    ("SchemaCurator", "curated_schema"), ("ExampleValidator", "anomalies"),
    ("Transform", "transform_graph"))


def _ingest(args: argparse.Namespace) -> int:
    from pipeline import local_runner, run_metadata

    base = config_lib.PipelineConfig(profile="ingest", pipeline_name="resnet-ablation-ingest")
    config = study_flags.config_from(args, base)
    local_runner.run(config, data_only=True)
    store = run_metadata.open_store(config.pipeline_root)
    uris = {key: run_metadata.latest_outputs(store, config.pipeline_name, component, key)[0].uri
            for component, key in DATA_ARTIFACTS}
    for key, uri in uris.items():
        print(f"{key:<16} {uri}")
    examples = uris["examples"]
    with open(os.path.join(examples, SKIPPED_FILE)) as file:
        counts = json.load(file)
    for split, count in counts["examples"].items():
        skipped = counts.get(split, {})
        detail = ", ".join(f"{reason} {n}" for reason, n in sorted(skipped.items()) if n) or "none"
        print(f"split {split}: {count} examples, skipped {sum(skipped.values())} ({detail})")
    return 0


def _run(args: argparse.Namespace) -> int:
    from pipeline import local_runner

    local_runner.run(study_flags.config_from(args))
    return 0


def _report(args: argparse.Namespace) -> int:
    from pipeline import study_merge
    from resnet_ablation import report_files

    if len(args.pipeline_roots) > 1 and args.output is None:
        raise UsageError("merging several pipeline roots needs --output DIR")
    if args.with_runs and args.output is None:
        raise UsageError("--with-runs needs --output DIR")
    roots = [str(root.resolve()) for root in args.pipeline_roots]
    paths = study_merge.render_report(roots, args.output and str(args.output),
                                    publish=args.with_runs)
    print(report_files.terminal_summary(json.loads(paths["json"].read_text())))
    for kind, path in paths.items():
        print(f"{kind:<9} {path}")
    return 0


def _plan(args: argparse.Namespace) -> int:
    from pipeline import study_plan

    config = config_lib.validate(study_flags.config_from(args))
    print(study_plan.describe(study_plan.make_plan(config, args.gpus, args.gpu_type)))
    return 0


def _compile(args: argparse.Namespace) -> int:
    from kubeflow import runner

    runner.run(args)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from pipeline import local_runner, run_metadata

    root = str(args.pipeline_root.resolve())
    runs = run_metadata.pipeline_runs(run_metadata.open_store(root))
    live = local_runner.root_in_use(root)
    print(f"{'pipeline':<32}{'run':<30}{'ran':>5}{'cached':>8}{'failed':>8}{'seconds':>10}  status")
    for index, (pipeline_name, run_id, components) in enumerate(runs):
        count = collections.Counter(c.state for c in components)
        print(f"{pipeline_name:<32}{run_id:<30}{count['ran']:>5}{count['cached']:>8}"
              f"{count['failed']:>8}{sum(c.seconds for c in components):>10.1f}  "
              f"{_run_status(count, newest=index == len(runs) - 1, live=live)}")
    return 0


def _run_status(states: collections.Counter, newest: bool, live: bool) -> str:
    """finished, failed, running, or interrupted: a component still marked running while no
    process holds the root (a killed run), or any run but the newest left running."""
    if states["running"]:
        return "running" if newest and live else "interrupted"
    return "failed" if states["failed"] else "finished"


class UsageError(Exception):
    """A command used wrongly (exit code 2); its message says what to do instead."""


def _model_name(value: str) -> str:
    if value not in MODEL_NAMES:
        raise argparse.ArgumentTypeError(
            f"unknown model {value!r}; valid names: {', '.join(MODEL_NAMES)}")
    return value


def _add_models(commands) -> None:
    commands.add_parser("models", help="list every model variant with its parameter count"
                        ).set_defaults(func=_models)


def _add_summary(commands) -> None:
    summary = commands.add_parser("summary", help="print a model's Keras summary and parameter counts")
    summary.add_argument("name", type=_model_name)
    summary.add_argument("--num-classes", type=study_flags.positive, default=1000)
    summary.add_argument("--image-size", type=study_flags.positive, default=224)
    study_flags.add_shortcut_flag(summary)
    summary.set_defaults(func=_summary)


def _add_gradients(commands) -> None:
    gradients = commands.add_parser(
        "gradients", help="plot per-convolution relative gradient norms at initialisation and "
                          "after some training steps, on real images (PNG)")
    gradients.add_argument("names", nargs="+", type=_model_name, metavar="NAME")
    gradients.add_argument("--output", type=pathlib.Path, default=pathlib.Path("gradients.png"),
                           help="the PNG to write (default gradients.png)")
    gradients.add_argument("--data-folder", default="data/cifar10_smoke",
                           help="image folder whose train images are used (default: the smoke set)")
    gradients.add_argument("--image-size", type=study_flags.positive, default=32)
    gradients.add_argument("--batch", type=study_flags.positive, default=64)
    gradients.add_argument("--batches", type=study_flags.positive, default=4,
                           help="batches the ratios are averaged over (default 4)")
    gradients.add_argument("--seeds", type=study_flags.positive, default=3,
                           help="initialisations (default 3)")
    gradients.add_argument("--steps", type=int, default=100,
                           help="SGD steps before the second measurement (default 100)")
    gradients.add_argument("--learning-rate", type=float, default=0.1,
                           help="at batch 128, scaled linearly with --batch (default 0.1)")
    gradients.set_defaults(func=_gradients)


def _add_ingest(commands) -> None:
    ingest = commands.add_parser(
        "ingest", help="run the data half (ExampleGen .. Transform) and print its artifacts")
    study_flags.add_data_flags(ingest, required=True)
    ingest.set_defaults(image_size=224, func=_ingest)


RUN_EXAMPLES = """examples:
  ablation run                                    # the smoke study, a few minutes
  ablation run --profile cifar_cpu --first-seed 1 --pipeline-root runs/cifar_cpu/seed1
  ablation run --profile my_study.toml --set training.epochs=40 --set training.mixed_precision=off
  ablation run --profile cifar_cpu --models cifar_resnet20,cifar_plain20 --seeds 3

Profiles: pipeline/profiles/*.toml (top-level keys are pipeline settings, the [training] table
the Trainer's). Outputs, ML Metadata and the report go under the pipeline root; a rerun reuses
what is cached and resumes an interrupted Trainer from its last epoch."""


def _add_run(commands) -> None:
    run = commands.add_parser(
        "run", help="run the whole ablation pipeline locally",
        description="Runs the whole pipeline on this machine (TFX's LocalDagRunner): ingest, "
                    "statistics, schema, Transform, a Trainer per model and seed, TFMA's "
                    "Evaluator per residual/plain pair, and the ablation report.",
        epilog=RUN_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    study_flags.add_study_flags(run)
    run.set_defaults(func=_run)


def _add_plan(commands) -> None:
    from pipeline.study_plan import GPU_KINDS

    plan = commands.add_parser(
        "plan", help="print what a study will run and estimate its cost on GPUs (no training)",
        description="Prints the components and Trainers a study runs, its epochs and train "
                    "images, each model's training FLOPs per image and memory per GPU, and an "
                    "ESTIMATED training time from a published ResNet-50 throughput; refuses a "
                    "batch that would not fit the GPU's memory.",
        epilog="example:\n  ablation plan --profile cifar10 --gpus 8 --gpu-type a100-80gb",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    study_flags.add_study_flags(plan)
    plan.add_argument("--gpus", type=study_flags.positive, default=1,
                      help="GPUs the batch is split over (default 1)")
    plan.add_argument("--gpu-type", default="a100-80gb", choices=sorted(GPU_KINDS),
                      help="the GPU kind (default a100-80gb)")
    plan.set_defaults(func=_plan)


def _add_report(commands) -> None:
    report = commands.add_parser(
        "report", help="re-render the ablation report of a pipeline root, or merge the shards "
                       "of one study run in several roots (or published shard folders)")
    report.add_argument("pipeline_roots", type=pathlib.Path, nargs="+", metavar="PATH")
    report.add_argument("--output", type=pathlib.Path,
                        help="the folder to write the report to (default PATH/report; required "
                             "with several roots)")
    report.add_argument("--with-runs", "--with-histories", dest="with_runs", action="store_true",
                        help="also write each PATH as a shard folder DIR/runs/<PATH's name> "
                             "(histories, predictions, layer responses, Evaluator metrics, "
                             "configuration, data summary: small files that merge later "
                             "without the root; needs --output)")
    report.set_defaults(func=_report)


def _add_runs(commands) -> None:
    runs = commands.add_parser(
        "runs", help="list the runs recorded in a pipeline root's ML Metadata (local engine)")
    runs.add_argument("pipeline_root", type=pathlib.Path, metavar="PATH")
    runs.set_defaults(func=_runs)


def _add_compile(commands) -> None:
    from kubeflow.runner import add_arguments  # the flags of kubeflow/runner.py, shared

    compile_ = commands.add_parser(
        "compile", help="compile the pipeline for Kubeflow Pipelines v2 (KFP or Vertex AI)")
    add_arguments(compile_)
    compile_.set_defaults(func=_compile)


SUBCOMMANDS = (_add_models, _add_summary, _add_gradients, _add_ingest, _add_run, _add_plan,
               _add_report, _add_runs, _add_compile)


def version_text() -> str:
    """This project's version and the versions of what it runs on, without importing them."""
    from importlib import metadata

    return (f"ablation {metadata.version('resnet-ablation')} (TFX {metadata.version('tfx')}, "
            f"TensorFlow {metadata.version('tensorflow')}, Python {sys.version.split()[0]})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ablation",
        description="Residual vs plain networks: the He et al. (2015) ablation as a TFX pipeline.",
        epilog="Exit codes: 0 success, 1 data or runtime error, 2 usage or configuration error, "
               "130 interrupted.")
    parser.add_argument("--debug", action="store_true",
                        help="show full tracebacks (also ABLATION_DEBUG=1)")
    parser.add_argument("--version", action="version", version=version_text())
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs one subcommand; returns its exit code (see the module docstring)."""
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get("ABLATION_DEBUG", "") not in ("", "0")
    previous_handler = signal.getsignal(signal.SIGINT)
    interrupted = _catch_interrupts(quiet=not debug, command=args.command)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        if debug:
            raise
        print(f"ablation {args.command}: interrupted", file=sys.stderr)
        return 130
    except (config_lib.ConfigError, UsageError) as error:
        if debug:
            raise
        print(f"ablation {args.command}: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # the one place errors become exit codes
        if debug:
            raise
        if interrupted.is_set():  # Beam and TFX wrap the KeyboardInterrupt in their own errors
            print(f"ablation {args.command}: interrupted", file=sys.stderr)
            return 130
        print(f"ablation {args.command}: {_one_line(error)} (--debug shows the traceback)",
              file=sys.stderr)
        return 1
    finally:
        if threading.current_thread() is threading.main_thread():
            # interrupted: further Ctrl-Cs are ignored while the process winds down (Beam's
            # and TensorFlow's threads take seconds to stop; Python's finalisation would
            # otherwise die of the signal, exit -2 instead of 130)
            signal.signal(signal.SIGINT, signal.SIG_IGN if interrupted.is_set()
                          else previous_handler)


def _catch_interrupts(quiet: bool, command: str = "") -> threading.Event:
    """Makes Ctrl-C (SIGINT) set the returned event, then raise KeyboardInterrupt as usual;
    with `quiet`, the log records components emit while unwinding are dropped. A second Ctrl-C
    ends the process at once (exit 130): a component busy in native code (TFDV's statistics,
    a Beam bundle) sees the first only when it returns to Python, which took up to a minute
    under load. The root's lock goes with the process; its temporary folder is cleared by
    the next run."""
    interrupted = threading.Event()

    def on_interrupt(signum, frame):
        if interrupted.is_set():
            print(f"ablation {command}: interrupted", file=sys.stderr, flush=True)
            os._exit(130)
        interrupted.set()
        print(f"ablation {command}: stopping (Ctrl-C again stops at once)", file=sys.stderr,
              flush=True)
        if quiet:
            logging.disable(logging.CRITICAL)
        raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, on_interrupt)
    return interrupted


def _one_line(error: BaseException) -> str:
    """The error's first non-empty message line, prefixed by its type unless that is a plain
    ValueError/RuntimeError (whose messages are written to stand alone)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    message = lines[0] if lines else repr(error)
    if type(error) in (ValueError, RuntimeError):
        return message
    return f"{type(error).__name__}: {message}"


if __name__ == "__main__":
    sys.exit(main())
