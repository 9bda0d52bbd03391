"""The pipeline's building blocks: TFX components, their executors and the modules TFX loads
(ImageExampleGen, the Transform module, the Trainer module and its parts, the Evaluator, the
report). The science they use lives in ``resnet_ablation``, whose import turns TensorFlow's
oneDNN kernels on before TensorFlow loads (see its docstring).
"""

import resnet_ablation  # noqa: F401  (oneDNN on for this process and its children, before TensorFlow)


def __getattr__(name: str):
    # Kubeflow V2 rebuilds a custom artifact class from its type name, "module.Class": the
    # report's type is "components.AblationReportArtifact". Lazy, so importing `components`
    # stays free of TensorFlow.
    if name == "AblationReportArtifact":
        from components.report import AblationReportArtifact

        return AblationReportArtifact
    raise AttributeError(f"module 'components' has no attribute {name!r}")
