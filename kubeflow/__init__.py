"""Kubeflow Pipelines (v2) support: compiling the pipeline (``runner``) and its task image."""
