"""The pieces the pipeline is built from: ingestion, Transform module, models, Trainer, report."""


def __getattr__(name: str):
    # Kubeflow V2 rebuilds a custom artifact class from its type name, "module.Class": the
    # report's type is "components.AblationReportArtifact". Lazy, so importing `components`
    # stays free of TensorFlow.
    if name == "AblationReportArtifact":
        from components.report import AblationReportArtifact

        return AblationReportArtifact
    raise AttributeError(f"module 'components' has no attribute {name!r}")
