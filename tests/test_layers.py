"""The project's layers, kept apart: the science library (``resnet_ablation``) imports neither
TFX nor the pipeline's packages; components never import the pipeline layer; the statistics
and contracts load without TensorFlow."""

import ast
import pathlib
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
LIBRARY = REPO / "resnet_ablation"
# TFX and the libraries only its components use, and the project's own upper layers
NOT_IN_THE_LIBRARY = {"tfx", "tfx_bsl", "tensorflow_transform", "tensorflow_model_analysis",
                      "ml_metadata", "components", "pipeline", "kubeflow"}


def imported_roots(path: pathlib.Path) -> dict[str, int]:
    """Top-level package of every import in ``path`` (relative imports excluded) -> first line."""
    roots: dict[str, int] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            roots.setdefault(name.split(".")[0], node.lineno)
    return roots


def offending_imports(folder: pathlib.Path, forbidden: set[str]) -> list[str]:
    return [f"{path.relative_to(folder.parent)}:{line} imports {root}"
            for path in sorted(folder.glob("*.py"))
            for root, line in imported_roots(path).items() if root in forbidden]


def test_the_library_imports_no_tfx_and_no_upper_layer():
    assert sorted(p.stem for p in LIBRARY.glob("*.py"))  # the package is where the test looks
    assert offending_imports(LIBRARY, NOT_IN_THE_LIBRARY) == []


def test_the_check_sees_a_forbidden_import(tmp_path):
    (tmp_path / "bad.py").write_text("import os\nfrom tfx.types import Artifact\nfrom pipeline import cli\n")
    found = [line.split(" ", 1)[1] for line in offending_imports(tmp_path, NOT_IN_THE_LIBRARY)]
    assert found == ["imports tfx", "imports pipeline"]


def loaded_packages(modules: list[str], among: set[str]) -> str:
    """Which of the top-level packages `among` a fresh interpreter holds after importing
    `modules`, as the sorted list it prints."""
    code = (f"import sys; import {', '.join(modules)}; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({sorted(among)!r})))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=REPO).stdout.strip()


@pytest.mark.slow
def test_loading_every_library_module_loads_no_tfx_or_upper_layer():
    """What the modules pull in transitively (tensorflow_datasets, TensorFlow) stays free of them too."""
    modules = sorted(f"resnet_ablation.{p.stem}" for p in LIBRARY.glob("*.py") if p.stem != "__init__")
    out = loaded_packages(modules, NOT_IN_THE_LIBRARY)
    assert len(modules) >= 14 and out == "[]"


def test_statistics_and_contracts_load_without_tensorflow():
    out = loaded_packages(["resnet_ablation.contracts", "resnet_ablation.comparison"],
                          {"tensorflow", "tfx"})
    assert out == "[]"


def test_components_never_import_the_pipeline_layer():
    """Components are what the pipeline is built from: none imports the pipeline layer."""
    assert offending_imports(REPO / "components", {"pipeline", "kubeflow"}) == []
