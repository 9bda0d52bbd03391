"""The pieces the pipeline is built from: ingestion, Transform module, models, Trainer, report.

Importing the package turns TensorFlow's oneDNN kernels on for this process and the processes
it starts (Beam workers, a Trainer's child), unless ``TF_ENABLE_ONEDNN_OPTS`` is set already:
TensorFlow enables them by itself only on x86 processors with AVX-512 VNNI or newer, and
leaves them off on AVX2-only ones, where training with them is 1.6-2.2x faster (README,
Performance). It acts only if TensorFlow is not loaded yet; ``hardware.onednn_enabled`` tells
what a process got. Every entry point of the project imports ``components`` before TensorFlow.
"""

import os
import platform

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault(ONEDNN_ENV, "1")


def __getattr__(name: str):
    # Kubeflow V2 rebuilds a custom artifact class from its type name, "module.Class": the
    # report's type is "components.AblationReportArtifact". Lazy, so importing `components`
    # stays free of TensorFlow.
    if name == "AblationReportArtifact":
        from components.report import AblationReportArtifact

        return AblationReportArtifact
    raise AttributeError(f"module 'components' has no attribute {name!r}")
