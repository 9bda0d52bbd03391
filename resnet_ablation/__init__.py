"""The science of the ablation, free of TFX: the model family and its table, what a training
step costs, the run contracts, data sources and image checks, statistics and verdicts, plots
and report files, diagnostics. Nothing here imports TFX or the ``pipeline`` package
(``tests/test_layers.py`` keeps it so); TensorFlow and Keras only where a model needs them.

Importing the package turns TensorFlow's oneDNN kernels on for this process and the processes
it starts (Beam workers, a Trainer's child), unless ``TF_ENABLE_ONEDNN_OPTS`` is set already:
TensorFlow enables them by itself only on x86 processors with AVX-512 VNNI or newer, and
leaves them off on AVX2-only ones, where training with them is 1.6-2.2x faster
(docs/performance.md). It acts only if TensorFlow is not loaded yet;
``components.hardware.onednn_enabled`` tells what a process got. Every entry point of the
project imports this package (directly or through ``components``) before TensorFlow.
"""

import os
import platform

ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault(ONEDNN_ENV, "1")
