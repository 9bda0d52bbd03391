"""Proves the installed TFX 1.21 stack works on this host; run at the end of ``make setup``.

``verify_stack`` imports TFX's public API, opens an ML Metadata SQLite store and runs TFDV
schema inference and validation on a tiny dataframe: the three things the glibc compat step
(tools/glibc_compat.py) exists for. It raises on any failure and returns what it saw.
"""

from __future__ import annotations

import pathlib
import sys
import tempfile


def verify_stack(workdir: pathlib.Path) -> dict[str, object]:
    """Returns versions and results of the three checks; raises if any check fails."""
    import pandas as pd
    import tensorflow_data_validation as tfdv
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2
    from tfx import (
        v1 as tfx,  # noqa: F401  (the import itself is the check)
        version as tfx_version,
    )

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(workdir / "mlmd.sqlite")
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    store = metadata_store.MetadataStore(config)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="InstallCheck"))

    frame = pd.DataFrame({"label": [0, 1, 1], "name": ["cat", "dog", "dog"]})
    statistics = tfdv.generate_statistics_from_dataframe(frame)
    schema = tfdv.infer_schema(statistics)
    anomalies = tfdv.validate_statistics(statistics, schema)
    return {
        "tfx": tfx_version.__version__,
        "mlmd_artifact_type_id": type_id,
        "schema_features": sorted(feature.name for feature in schema.feature),
        "anomalies": len(anomalies.anomaly_info),
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        result = verify_stack(pathlib.Path(tmp))
    print(f"install check: tfx {result['tfx']} imports, MLMD SQLite store opens, "
          f"TFDV inferred a schema of {result['schema_features']} with "
          f"{result['anomalies']} anomalies: OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
