"""Shared test setup.

The project's Keras flavour is chosen before anything imports TensorFlow, and ``ingested``
runs the real data half of the pipeline (LocalDagRunner, in-memory DirectRunner) once per
session on a slice of the shipped CIFAR-10 smoke set, for the tests of later stages.
"""

import dataclasses
import os
import pathlib

import pytest

import resnet_ablation.keras2  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)

REPO = pathlib.Path(__file__).resolve().parents[1]
SMOKE_DATA = REPO / "data" / "cifar10_smoke"
IN_MEMORY = ("--direct_running_mode=in_memory",)


@dataclasses.dataclass(frozen=True)
class Ingested:
    """URIs of the data half's artifacts from one pipeline run."""

    pipeline_root: str
    examples: str
    schema: str  # the curated schema's directory
    transform_graph: str
    anomalies: str
    statistics: str

    def split_files(self, split: str) -> list[str]:
        return [os.path.join(self.examples, f"Split-{split}", "*")]


def ingest(root: pathlib.Path, **overrides) -> Ingested:
    from pipeline import config as config_lib, local_runner, run_metadata

    config = config_lib.PipelineConfig(
        profile="test", pipeline_name="test-ingest", data=f"imagefolder:{SMOKE_DATA}",
        image_size=32, train_limit=96, pipeline_root=str(root), beam_args=IN_MEMORY)
    local_runner.run(dataclasses.replace(config, **overrides), data_only=True)
    store = run_metadata.open_store(str(root))

    def uri(component: str, key: str) -> str:
        return run_metadata.latest_outputs(store, config.pipeline_name, component, key)[0].uri

    return Ingested(str(root), uri("ImageExampleGen", "examples"),
                    uri("SchemaCurator", "curated_schema"), uri("Transform", "transform_graph"),
                    uri("ExampleValidator", "anomalies"), uri("StatisticsGen", "statistics"))

@pytest.fixture(scope="session")
def ingested(tmp_path_factory) -> Ingested:
    return ingest(tmp_path_factory.mktemp("ingest"))
