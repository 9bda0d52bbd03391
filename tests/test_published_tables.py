"""The results tables in the documents are written from the committed study files.

README.md's table of the CIFAR study, its table of the seeds' experiment (in accuracy) and
docs/results.md's (in error) quote numbers by hand; each number must be the one its study's
`ablation.json` (the merged report, re-rendered from the committed shard folders) holds for that
cell:

- a model's cell: its error or accuracy seed by seed (`12.34 % (seed 0), ...` or `a / b / c %`
  in seed order), or the mean and standard deviation over seeds (`12.34 ± 0.56 %`), in percent;
- a residual − plain cell: the verdict's gap and 95 % interval in points (the verdicts hold
  accuracy gaps; an error gap is their negative, its interval the other way round), the number
  of seeds the interval is over, the per-seed gaps if listed, and the verdict's conclusion.

Numbers are compared as printed: at the precision the cell gives them. Pure Python, but for
the slow check that each 224-pixel study's `ablation.csv` is what its committed shard folders
re-render to (the CIFAR study's is checked with its report's layout).
"""

from __future__ import annotations

import functools
import json
import pathlib
import re

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
NUMBER = re.compile(r"[−+-]?\d+(?:\.\d+)?")
PER_SEED_VALUE = re.compile(r"([−+-]?\d+\.\d+) % \(seed (\d+)\)")
MEAN_SD = re.compile(r"^([−+-]?\d+\.\d+) ± (\d+\.\d+) %$")
GAP = re.compile(
    r"^(?P<gap>\S+) points \((?P<low>\S+) to (?P<high>[^,)]+)"
    r"(?:, t over (?P<seeds>\d+) seeds)?(?:; per seed (?P<per_seed>[^)]*))?\)(?:: (?P<words>.+))?$"
)
# the seeds' table: which study a row is, by how its first cell starts
SEEDS_TABLE_STUDIES = {"CIFAR-10 at 224": "cifar10_224_cpu", "cats_vs_dogs": "cats_vs_dogs_cpu"}
SEEDS_TABLE_COLUMNS = ("resnet34", "plain34", ("resnet34", "plain34"), "resnet50", "plain50",
                       ("resnet50", "plain50"))


def number(text: str) -> float:
    return float(text.replace("−", "-").replace("+", ""))


def printed(value: float, like: str) -> str:
    """``value`` at the number of decimals ``like`` has, with a plain minus sign."""
    decimals = len(like.split(".")[1]) if "." in like else 0
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text


def same(value: float, quoted: str) -> bool:
    return printed(value, quoted) == printed(number(quoted), quoted)


class Study:
    """One study's merged report: rows by (model, seed), summaries, verdicts."""

    def __init__(self, folder: str):
        report = json.loads((RESULTS / folder / "ablation.json").read_text())
        self.folder = folder
        self.rows = {(row["model"], row["seed"]): row for row in report["rows"]}
        self.summary = {entry["model"]: entry for entry in report["summary"]}
        self.verdicts = report["verdicts"]
        self.eval_split = report["rows"][0]["eval_split"]

    def percents(self, model: str, column: str = "eval_error") -> dict[int, float]:
        """``column`` of ``model``'s rows in percent, by seed."""
        return {seed: 100 * row[column] for (name, seed), row in sorted(self.rows.items()) if name == model}

    def verdict(self, residual: str, plain: str) -> dict:
        (verdict,) = [v for v in self.verdicts if v["kind"] == "residual_vs_plain"
                      and v["models"] == [residual, plain] and v["split"] == self.eval_split]
        return verdict


@functools.cache
def load_study(folder: str) -> Study:
    """The study of ``docs/results/<folder>``, read once per test session."""
    return Study(folder)


def table_rows(page: pathlib.Path, header_start: str) -> list[list[str]]:
    """The cells of each body row of the first table whose header row starts with ``header_start``."""
    lines = page.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header_start}"))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def check_model_cell(study: Study, model: str, cell: str, measure: str = "error") -> None:
    """``cell`` quotes ``model``'s eval error (``measure="error"``) or accuracy, in percent."""
    column = {"error": "eval_error", "accuracy": "val_accuracy"}[measure]
    values = study.percents(model, column)
    per_seed = PER_SEED_VALUE.findall(cell)
    if per_seed:
        assert {int(seed) for _, seed in per_seed} == set(values), f"{study.folder} {model}: {cell!r}"
        for value, seed in per_seed:
            assert same(values[int(seed)], value), f"{study.folder} {model} seed {seed}: {value} in {cell!r}"
        return
    match = MEAN_SD.match(cell)
    assert match, f"{study.folder} {model}: neither per-seed values nor mean ± sd in {cell!r}"
    summary = study.summary[model]
    assert summary["ok"] == len(values)
    assert same(100 * summary[f"{column}_mean"], match.group(1)), f"{study.folder} {model}: {cell!r}"
    assert same(100 * summary[f"{column}_std"], match.group(2)), f"{study.folder} {model}: {cell!r}"


def check_gap_cell(study: Study, residual: str, plain: str, cell: str, measure: str = "error") -> None:
    """``cell`` quotes the residual − plain verdict in points of ``measure`` (error or accuracy)."""
    match = GAP.match(cell)
    assert match, f"{study.folder} {residual} − {plain}: unreadable gap cell {cell!r}"
    verdict = study.verdict(residual, plain)
    sign = {"error": -1, "accuracy": 1}[measure]
    low, high = sorted((sign * 100 * verdict["ci_low"], sign * 100 * verdict["ci_high"]))
    where = f"{study.folder} {residual} − {plain}: {cell!r}"
    assert same(sign * 100 * verdict["gap"], match["gap"]), where
    assert same(low, match["low"]) and same(high, match["high"]), where
    if match["seeds"]:
        assert int(match["seeds"]) == verdict["seeds"], where
    if match["per_seed"]:
        quoted = NUMBER.findall(match["per_seed"])
        paired = [study.rows[(residual, seed)]["delta_vs_plain"] for seed in sorted(study.percents(residual))]
        gaps = [sign * 100 * delta for delta in paired if delta is not None]  # seeds with a twin
        assert len(quoted) == len(gaps) and all(map(same, gaps, quoted)), where
    if match["words"]:
        assert match["words"] == verdict["conclusion"].replace("_", " "), where


def test_the_readme_table_of_the_cifar_study_is_its_ablation_json():
    study = load_study("cifar_cpu")
    rows = table_rows(REPO / "README.md", "model | train error, seeds")
    assert {row[0] for row in rows} == {model for model, _ in study.rows}
    for model, train, test, mean, gap in rows:
        for cell, column in ((train, "train_error"), (test, "eval_error")):
            quoted = NUMBER.findall(cell.replace(" %", ""))
            errors = list(study.percents(model, column).values())
            assert len(quoted) == len(errors) and all(map(same, errors, quoted)), f"{model}: {cell!r}"
        assert same(100 * study.summary[model]["eval_error_mean"], mean.removesuffix(" %")), model
        if gap:
            check_gap_cell(study, model, model.replace("resnet", "plain"), gap)


@pytest.mark.parametrize("page, header, measure", [
    ("README.md", "data, epochs, seeds |", "accuracy"),
    ("docs/results.md", "data, length |", "error"),
])
def test_the_seeds_tables_are_their_studies_ablation_json(page, header, measure):
    rows = table_rows(REPO / page, header)
    studies = [next(folder for start, folder in SEEDS_TABLE_STUDIES.items() if row[0].startswith(start))
               for row in rows]
    assert sorted(studies) == sorted(SEEDS_TABLE_STUDIES.values())
    for folder, row in zip(studies, rows):
        study = load_study(folder)
        for column, cell in zip(SEEDS_TABLE_COLUMNS, row[1:], strict=True):
            if isinstance(column, tuple):
                check_gap_cell(study, *column, cell, measure)
            else:
                check_model_cell(study, column, cell, measure)


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["cifar10_224_cpu", "cats_vs_dogs_cpu"])
def test_the_study_re_renders_its_csv_from_its_committed_shard_folders(folder, tmp_path):
    from pipeline import study_merge

    shards = sorted(str(shard) for shard in (RESULTS / folder / "runs").iterdir())
    written = study_merge.render_report(shards, str(tmp_path))
    assert written["csv"].read_bytes() == (RESULTS / folder / "ablation.csv").read_bytes()


# Controls on the finished CIFAR-10-at-224 study: the right cells pass, one wrong thing fails.
RESNET34_CELLS = ["45.70 % (seed 0), 45.35 % (seed 1), 47.05 % (seed 2)", "46.03 ± 0.90 %"]
RESNET34_GAP = ("−12.10 points (−14.94 to −9.26, t over 3 seeds; per seed −12.55, −12.95 and −10.80): "
                "residual better")


@pytest.mark.parametrize("cell", RESNET34_CELLS)
def test_the_right_model_cell_passes(cell):
    check_model_cell(load_study("cifar10_224_cpu"), "resnet34", cell)


@pytest.mark.parametrize("cell", [
    "45.71 % (seed 0), 45.35 % (seed 1), 47.05 % (seed 2)",
    "45.70 % (seed 0), 45.35 % (seed 1)",
    "45.35 % (seed 0), 45.70 % (seed 1), 47.05 % (seed 2)",
    "46.03 ± 0.91 %",
    "58.13 ± 0.25 %",
])
def test_a_wrong_or_missing_number_in_a_model_cell_fails(cell):
    with pytest.raises(AssertionError):
        check_model_cell(load_study("cifar10_224_cpu"), "resnet34", cell)


def test_the_right_gap_cell_passes():
    check_gap_cell(load_study("cifar10_224_cpu"), "resnet34", "plain34", RESNET34_GAP)


def test_in_accuracy_the_gap_and_its_interval_turn_round():
    in_accuracy = ("+12.10 points (+9.26 to +14.94, t over 3 seeds; per seed +12.55, +12.95 and +10.80): "
                   "residual better")
    check_gap_cell(load_study("cifar10_224_cpu"), "resnet34", "plain34", in_accuracy, "accuracy")
    check_model_cell(load_study("cifar10_224_cpu"), "resnet34", "53.97 ± 0.90 %", "accuracy")
    with pytest.raises(AssertionError):
        check_gap_cell(load_study("cifar10_224_cpu"), "resnet34", "plain34", RESNET34_GAP, "accuracy")


@pytest.mark.parametrize("wrong", [
    ("(−14.94 to −9.26", "(−9.26 to −14.94"),
    ("t over 3 seeds", "t over 2 seeds"),
    ("−12.95 and", "−12.59 and"),
    ("residual better", "not distinguishable"),
    ("−12.10 points", "−12.11 points"),
])
def test_a_wrong_interval_order_count_or_verdict_in_a_gap_cell_fails(wrong):
    with pytest.raises(AssertionError):
        check_gap_cell(load_study("cifar10_224_cpu"), "resnet34", "plain34", RESNET34_GAP.replace(*wrong))
