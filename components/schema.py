"""SchemaCurator: adds what inference cannot know to the schema SchemaGen inferred.

SchemaGen sees ``label`` as a plain integer and ``image`` as opaque bytes. The curated schema
states the label's domain [0, num_classes) from the class list ExampleGen stored with the
Examples (``labels.json``), marks ``image`` as an image domain, and requires both in every
example. ExampleValidator and Transform consume the curated schema.

SchemaGen also gives a string feature with few distinct values in train (TFDV: up to 100) a
domain of exactly those values. For ``id`` (unique per image) that is the list of train ids,
so on a small data set every eval id was an "Unexpected string values" anomaly; for
``label_name`` it repeats the label's domain by name. The curated schema drops both domains.
"""

import json
import os

import tensorflow as tf
import tensorflow_data_validation as tfdv
from tfx import v1 as tfx
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.types import standard_artifacts

from resnet_ablation.data_source import ID_KEY, IMAGE_KEY, LABEL_KEY, LABEL_NAME_KEY, LABELS_FILE

SCHEMA_FILE = "schema.pbtxt"


def read_labels(examples_uri: str) -> list[str]:
    """The class names ExampleGen stored with an Examples artifact, in label order."""
    with tf.io.gfile.GFile(os.path.join(examples_uri, LABELS_FILE)) as file:
        return json.load(file)["names"]


def curate(schema, num_classes: int):
    """Returns a copy of `schema` with the label domain and image domain set, both required,
    and no value domain on ``id`` or ``label_name`` (see the module's docstring)."""
    curated = type(schema)()
    curated.CopyFrom(schema)
    for name in (ID_KEY, LABEL_NAME_KEY):
        _drop_string_domain(curated, name)
    label = tfdv.get_feature(curated, LABEL_KEY)
    label.int_domain.min = 0
    label.int_domain.max = num_classes - 1
    image = tfdv.get_feature(curated, IMAGE_KEY)
    image.ClearField("domain_info")
    image.image_domain.SetInParent()
    for feature in (label, image):
        feature.presence.min_fraction = 1.0
    return curated


def _drop_string_domain(schema, name: str) -> None:
    """Removes feature `name`'s domain from `schema`, and the top-level string domain it named
    if no other feature names it (no feature `name`: nothing to do)."""
    features = [feature for feature in schema.feature if feature.name == name]
    if not features:
        return
    feature = features[0]
    domain = feature.domain if feature.WhichOneof("domain_info") == "domain" else None
    feature.ClearField("domain_info")
    if domain is None or any(f.WhichOneof("domain_info") == "domain" and f.domain == domain
                             for f in schema.feature):
        return
    kept = [entry for entry in schema.string_domain if entry.name != domain]
    del schema.string_domain[:]
    schema.string_domain.extend(kept)


@tfx.dsl.components.component
def SchemaCurator(  # noqa: N802  (TFX component factories are named like classes)
    schema: InputArtifact[standard_artifacts.Schema],
    examples: InputArtifact[standard_artifacts.Examples],
    curated_schema: OutputArtifact[standard_artifacts.Schema],
) -> None:
    """TFX component: writes ``curate(schema, len(labels))`` as the curated schema."""
    inferred = tfdv.load_schema_text(os.path.join(schema.uri, SCHEMA_FILE))
    result = curate(inferred, len(read_labels(examples.uri)))
    # The orchestrator hands an output URI, not a folder: LocalDagRunner creates it, Kubeflow's
    # launchers do not (GCS needs no folders; a local or mounted root does).
    tf.io.gfile.makedirs(curated_schema.uri)
    tfdv.write_schema_text(result, os.path.join(curated_schema.uri, SCHEMA_FILE))
