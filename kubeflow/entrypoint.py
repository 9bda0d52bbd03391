"""The container command of every task: TFX's Kubeflow V2 entrypoint, with input types restored.

    python -m kubeflow.entrypoint --executor_class_path CLASS \\
        --json_serialized_invocation_args '{{$}}' --json_serialized_inputs_spec_args SPEC [BEAM...]

``kubeflow/runner.py`` compiles this module as the spec's container command; it takes exactly
the arguments of ``tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor`` and runs
that module with them, after one repair.

TFX's entrypoint builds each input artifact's Python class from the type the orchestrator
hands in the ExecutorInput (``tfx.Examples`` -> ``tfx.types.standard_artifacts.Examples``; a
custom title is imported as ``module.Class``). Vertex AI hands the types the spec declares.
Open-source Kubeflow Pipelines and ``kfp.local`` hand every input artifact typed KFP's generic
``system.Artifact``, which TFX 1.21 then fails to import (``ImportError: Could not import
system.Artifact``; tensorflow/tfx#7768). The task already carries the declared types: TFX
compiles the component's inputs spec into ``--json_serialized_inputs_spec_args``. So each input
artifact typed ``system.Artifact`` (or untyped) gets the ``artifactType`` its input declares
there.

A second gap is kfp.local's alone: an output artifact's declared ``metadata`` (the component's
``additional_custom_properties``, e.g. ``model_name`` and ``seed`` on a Trainer's ModelRun) is
copied into the ExecutorInput by Vertex AI and by the KFP backend's driver, while kfp.local
starts every output's metadata empty. ``kubeflow/runner.py`` therefore also passes the declared
output metadata as ``--output_metadata_json``; this module removes that flag and fills in any
declared key the output artifact lacks.

Nothing else changes: when every input already has a specific type and every output its
declared metadata (Vertex AI), TFX gets exactly the arguments TFX's compiler wrote.
"""

from __future__ import annotations

import atexit
import json
import resource
import runpy
import sys
import time

TFX_ENTRYPOINT = "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"
INVOCATION_FLAG = "--json_serialized_invocation_args"
INPUTS_SPEC_FLAG = "--json_serialized_inputs_spec_args"
OUTPUT_METADATA_FLAG = "--output_metadata_json"  # ours: {output key: declared metadata}
GENERIC_TYPES = ("", "system.Artifact")  # what KFP's launcher / kfp.local hand for any TFX type


def _flag_value(args: list[str], flag: str) -> tuple[int, str] | None:
    """(index of the value, value) of `flag` given as ``--flag VALUE`` or ``--flag=VALUE``."""
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return i + 1, args[i + 1]
        if arg.startswith(flag + "="):
            return i, arg[len(flag) + 1:]
    return None


def _title(artifact_type: dict) -> str:
    """The schema title of an ArtifactTypeSchema (JSON, either field naming)."""
    title = artifact_type.get("schemaTitle", artifact_type.get("schema_title"))
    if title is not None:
        return title
    schema = artifact_type.get("instanceSchema", artifact_type.get("instance_schema"))
    if schema:
        import yaml

        return (yaml.safe_load(schema) or {}).get("title", "")
    return ""


def restore_input_types(executor_input: dict, inputs_spec: dict) -> list[str]:
    """Gives every generically typed input artifact of `executor_input` (a parsed ExecutorInput,
    changed in place) the artifactType `inputs_spec` (a ComponentInputsSpec) declares for its
    input; returns the keys it changed."""
    declared = inputs_spec.get("artifacts", {})
    changed = []
    for key, artifact_list in executor_input.get("inputs", {}).get("artifacts", {}).items():
        spec_type = declared.get(key, {}).get("artifactType")
        if not spec_type:
            continue
        for artifact in artifact_list.get("artifacts", []):
            if _title(artifact.get("type", {})) in GENERIC_TYPES:
                artifact["type"] = dict(spec_type)
                changed.append(key)
    return sorted(set(changed))


def restore_output_metadata(executor_input: dict, declared: dict) -> list[str]:
    """Adds to every output artifact of `executor_input` (changed in place) the declared
    metadata keys it lacks (`declared`: {output key: metadata}); returns the keys it changed."""
    changed = []
    for key, artifact_list in executor_input.get("outputs", {}).get("artifacts", {}).items():
        for artifact in artifact_list.get("artifacts", []):
            metadata = artifact.setdefault("metadata", {})
            missing = {k: v for k, v in declared.get(key, {}).items() if k not in metadata}
            if missing:
                metadata.update(missing)
                changed.append(key)
    return sorted(set(changed))


def _without_flag(args: list[str], flag: str) -> tuple[list[str], str | None]:
    found = _flag_value(args, flag)
    if found is None:
        return list(args), None
    index, value = found
    start = index if args[index].startswith(flag + "=") else index - 1
    return args[:start] + args[index + 1:], value


def repaired_arguments(args: list[str]) -> tuple[list[str], list[str]]:
    """`args` for TFX's entrypoint: without ``--output_metadata_json``, the invocation's input
    types and output metadata restored; and what was restored ("input KEY", "output KEY")."""
    args, output_metadata = _without_flag(args, OUTPUT_METADATA_FLAG)
    invocation = _flag_value(args, INVOCATION_FLAG)
    if invocation is None:  # nothing to repair: TFX reports what is missing
        return args, []
    executor_input = json.loads(invocation[1])
    inputs_spec = _flag_value(args, INPUTS_SPEC_FLAG)
    changed = [f"input {key}" for key in restore_input_types(
        executor_input, json.loads(inputs_spec[1]) if inputs_spec else {})]
    changed += [f"output {key}" for key in restore_output_metadata(
        executor_input, json.loads(output_metadata) if output_metadata else {})]
    if not changed:
        return args, []
    repaired = list(args)
    index, value = invocation[0], json.dumps(executor_input)
    inline = args[index].startswith(INVOCATION_FLAG + "=")
    repaired[index] = f"{INVOCATION_FLAG}={value}" if inline else value
    return repaired, changed


def _report_usage_at_exit(name: str) -> None:
    """Logs the task's wall time and peak memory when the process ends (sizing pods)."""
    start = time.monotonic()

    def report() -> None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
        print(f"kubeflow.entrypoint: {name} ran {time.monotonic() - start:.0f} s, peak RSS "
              f"{peak:.0f} MB (this process; Beam workers in other processes not counted)",
              file=sys.stderr, flush=True)

    atexit.register(report)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    args, changed = repaired_arguments(args)
    if changed:
        print(f"kubeflow.entrypoint: restored from the spec: {', '.join(changed)}",
              file=sys.stderr, flush=True)
    import resnet_ablation.keras2  # noqa: F401  (tf.keras = Keras 2, before TensorFlow loads)

    executor = (_flag_value(args, "--executor_class_path") or (0, "?"))[1].rsplit(".", 2)[-2:]
    _report_usage_at_exit(".".join(executor))
    sys.argv = [TFX_ENTRYPOINT, *args]
    runpy.run_module(TFX_ENTRYPOINT, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
