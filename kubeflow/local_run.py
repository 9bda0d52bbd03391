"""Runs a compiled pipeline package end to end in containers with KFP's own local runner.

    python -m kubeflow.local_run spec.yaml --pipeline-root /abs/folder [--network none]

``kfp.local.init(runner=kfp.local.DockerRunner(...), pipeline_root=...)`` plus
``kfp.components.load_component_from_file(spec)``: every task of the spec (compiled by
``kubeflow/runner.py``, a ``.yaml``) runs in its container image through its container command,
``python -m kubeflow.entrypoint``, one after the other, with a local Docker daemon. This is the
open-source KFP code path without a cluster: kfp.local hands input artifacts typed
``system.Artifact``, as the KFP backend does. The spec's own pipeline root is not used: kfp.local
writes every artifact under ``--pipeline-root`` (mounted at the same path in each container),
in ``<pipeline name>-<start time>/<task>/<output>``.

The image runs as UID 1000, so the pipeline root is made world-writable (sticky, like /tmp). At
the end it prints the run folder and the AblationReport's table; the exit status is 0 only if
every task succeeded and the report was written.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
import time

REPORT_OUTPUT = "report"  # the AblationReport component's output key
REPORT_CSV = "ablation.csv"


def run(spec: str, pipeline_root: str, network: str | None = "none") -> pathlib.Path:
    """Runs `spec` under `pipeline_root`; returns the run's folder. Raises RuntimeError (kfp.local)
    when a task fails."""
    from kfp import components, local

    root = pathlib.Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    os.chmod(root, 0o1777)  # tasks run as UID 1000 (see kubeflow/Dockerfile)
    before = set(root.iterdir())
    run_args = {"network_mode": network} if network else {}
    local.init(runner=local.DockerRunner(**run_args), pipeline_root=str(root),
               raise_on_error=True)
    pipeline = components.load_component_from_file(spec)
    pipeline()
    [run_dir] = [path for path in root.iterdir() if path not in before and path.is_dir()]
    return run_dir


def report_csv(run_dir: pathlib.Path) -> pathlib.Path:
    """The AblationReport's ablation.csv in a kfp.local run folder."""
    [path] = run_dir.glob(f"*/{REPORT_OUTPUT}/{REPORT_CSV}")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kubeflow.local_run",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", help="a .yaml pipeline package from kubeflow/runner.py")
    parser.add_argument("--pipeline-root", required=True,
                        help="local folder for every artifact (created if needed)")
    parser.add_argument("--network", default="none",
                        help="Docker network of the task containers (default none: offline; "
                             "'' for Docker's default, e.g. for tfds downloads)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    run_dir = run(args.spec, args.pipeline_root, args.network or None)
    csv = report_csv(run_dir)
    print(f"\nkfp.local run finished in {time.monotonic() - start:.0f} s: {run_dir}")
    markdown = csv.with_name("ablation.md")
    print(markdown.read_text() if markdown.exists() else csv.read_text())
    print(f"report: {csv.parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
