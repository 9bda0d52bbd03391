"""The published study's report, re-rendered from its committed shard folders as
``ablation report docs/results/cifar_cpu/runs/seed0 ... --output DIR`` does: it leads with the
answer (title, forest plot, per-model table, verdicts), its numbers are the study's own, and
report.html reads at 390 px (a phone) and 1300 px (a desktop) in headless Chromium, nothing
wider than the page but the tables that scroll inside their own container.

The layout tests need Chromium (Debian: ``apt-get install chromium``) and are skipped without
it. The module takes about 8 s: rendering the study, then about 0.6 s per Chromium page.
"""

from __future__ import annotations

import csv
import html
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import xml.etree.ElementTree as ElementTree

import pytest

from pipeline import study_merge
from resnet_ablation import report_files

REPO = pathlib.Path(__file__).resolve().parents[1]
STUDY = REPO / "docs" / "results" / "cifar_cpu"
SHARDS = [STUDY / "runs" / f"seed{seed}" for seed in range(3)]
TITLE = "Residual vs plain on imagefolder:cifar10/png — profile cifar_cpu, seeds 0–2, 2026-11-27"
CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                "google-chrome"))), None)
SVG = "{http://www.w3.org/2000/svg}"
XLINK = "{http://www.w3.org/1999/xlink}"


@pytest.fixture(scope="module")
def published(tmp_path_factory) -> dict[str, pathlib.Path]:
    """The report of the three committed shard folders, written to a temporary folder."""
    output = tmp_path_factory.mktemp("published")
    return study_merge.render_report([str(shard) for shard in SHARDS], str(output))


@pytest.fixture(scope="module")
def content(published) -> dict:
    return json.loads(published["json"].read_text())


@pytest.fixture(scope="module")
def page(published) -> str:
    return published["html"].read_text()


# --------------------------------------------------------------------------- what it says


@pytest.mark.slow
def test_the_csv_is_the_committed_one_byte_for_byte(published):
    assert published["csv"].read_bytes() == (STUDY / "ablation.csv").read_bytes()


def test_the_page_leads_with_the_answer(page, published):
    """Title, then the forest plot, the per-model table, the verdicts, and only then the runs."""
    assert f"<title>{html.escape(TITLE)}</title>" in page
    assert f"<h1>{html.escape(TITLE)}</h1>" in page
    order = [page.index(marker) for marker in (
        "<h1>", 'alt="gaps in error', "<h2>Error per model</h2>", "<h2>Verdicts</h2>",
        "<h2>Runs</h2>", "<h2>Error curves</h2>", "<h2>Provenance</h2>")]
    assert order == sorted(order)
    markdown = published["markdown"].read_text()
    assert markdown.startswith(f"# {TITLE}\n\n![gaps in error, 95 % intervals](gaps.png)")
    assert markdown.index("## Error per model") < markdown.index("## Verdicts") < markdown.index(
        "## Runs")


def _svg_rows(svg: pathlib.Path) -> list[tuple[str, str, float, float, float, float]]:
    """The forest plot read back from its SVG, row by row (ids ``gap-*-<i>``): its label, its
    numbers, and its dot's and bar's x positions in data units (through the x tick labels),
    and the dot's y position on the page."""
    root = ElementTree.parse(svg).getroot()
    groups = {g.get("id"): g for g in root.iter(f"{SVG}g")}
    ticks = [(float(t.get("x")), float(t.text.replace("−", "-")))
             for key, group in groups.items() if re.fullmatch(r"xtick_\d+", key or "")
             for t in group.iter(f"{SVG}text")]
    (x0, v0), (x1, v1) = min(ticks), max(ticks)

    def value(x: float) -> float:
        return v0 + (x - x0) * (v1 - v0) / (x1 - x0)

    rows, index = [], 0
    while f"gap-label-{index}" in groups:
        label, numbers = (next(groups[f"gap-{kind}-{index}"].iter(f"{SVG}text")).text
                          for kind in ("label", "numbers"))
        dot = next(groups[f"gap-{index}"].iter(f"{SVG}use"))
        (start, _), (end, _) = re.findall(
            r"[ML] ([-\d.]+) ([-\d.]+)",
            next(groups[f"gap-interval-{index}"].iter(f"{SVG}path")).get("d"))
        rows.append((label, numbers, value(float(dot.get("x"))), value(float(start)),
                     value(float(end)), float(dot.get("y"))))
        index += 1
    return rows


def test_the_forest_plot_draws_every_verdicts_error_gap(published, content):
    """One row per verdict, in its order: the label, the dot at −gap and the bar from −ci_high
    to −ci_low (accuracy numbers of ablation.json, as error points), read back from gaps.svg."""
    rows = _svg_rows(published["gaps_svg"])
    verdicts = content["verdicts"]
    assert len(rows) == len(verdicts) == 8
    for (label, numbers, gap, low, high, _), verdict in zip(rows, verdicts):
        a, b = verdict["models"]
        expected = (-100 * verdict["gap"], -100 * verdict["ci_high"], -100 * verdict["ci_low"])
        assert label == f"{a} − {b}, {verdict['split']}"
        assert numbers == "{:+.2f} ({:+.2f} to {:+.2f})".format(*expected)
        assert (gap, low, high) == pytest.approx(expected, abs=0.02)
    assert [row[-1] for row in rows] == sorted(row[-1] for row in rows)  # top to bottom
    assert rows[0][2] < 0 < rows[4][2]  # residual-20 errs less; plain-56 more than plain-20
    assert rows[0][1] == "-2.19 (-2.73 to -1.64)" and rows[4][1] == "+45.20 (+37.65 to +52.76)"


def _final_errors(shard: pathlib.Path) -> dict[str, tuple[float, float]]:
    """Each model's final (test, training) error in % in one shard folder, from its own files:
    the Evaluator's accuracy (``metrics.json``) where the shard kept it, else the history's
    last val_accuracy, and the history's last clean_train_accuracy."""
    errors = {}
    for path in shard.glob("*.history.json"):
        final = json.loads(path.read_text())["epochs"][-1]
        metrics = path.with_name(path.name.replace(".history.json", ".metrics.json"))
        test = (json.loads(metrics.read_text()).get("accuracy") if metrics.exists() else None)
        errors[path.name.split("_seed")[0]] = (
            100 * (1 - (final["val_accuracy"] if test is None else test)),
            100 * (1 - final["clean_train_accuracy"]))
    return errors


def _html_table(page: str, first_header: str, second_header: str) -> list[dict[str, str]]:
    """The rows of the first table of `page` whose header starts with these two columns."""
    for table in re.findall(r"<table[^>]*>(.*?)</table>", page, re.S):
        header = re.findall(r"<th>(.*?)</th>", table)
        if header[:2] == [first_header, second_header]:
            return [dict(zip(header, map(html.unescape, re.findall(r"<td>(.*?)</td>", row))))
                    for row in re.findall(r"<tr>(<td>.*?)</tr>", table)]
    raise AssertionError(f"no table with columns {first_header}, {second_header}")


def test_the_per_model_table_is_mean_and_sd_over_the_seeds_histories(page, content):
    """Test error and clean training error per model: mean ± sample sd over seeds 0-2 of each
    run's final errors read from the shard folders' files, in %, as the table prints them and
    ablation.json's summary holds."""
    table = {row["model"]: row for row in _html_table(page, "model", "seeds")}
    assert list(table) == ["cifar_plain20", "cifar_resnet20", "cifar_plain56", "cifar_resnet56"]
    finals = [_final_errors(shard) for shard in SHARDS]
    for index, column in enumerate(("test error, %", "training error, %")):
        for model, row in table.items():
            errors = [final[model][index] for final in finals]
            assert row["seeds"] == "3"
            assert row[column] == f"{statistics.fmean(errors):.2f} ± {statistics.stdev(errors):.2f}"
    summary = {entry["model"]: entry for entry in content["summary"]}
    assert table["cifar_resnet56"]["test error, %"] == (
        f"{summary['cifar_resnet56']['eval_error_mean'] * 100:.2f} ± "
        f"{summary['cifar_resnet56']['eval_error_std'] * 100:.2f}")


def test_the_verdicts_speak_of_errors_as_the_table_does(page, content):
    table = {row["model"]: row for row in _html_table(page, "model", "seeds")}
    [first] = [v for v in content["verdicts"] if v["models"] == ["cifar_resnet20", "cifar_plain20"]
               and v["split"] == "test"]
    assert first["sentence"] == (
        "On test (10,000 images), cifar_resnet20 − cifar_plain20 = -2.19 points of error ("
        f"{table['cifar_resnet20']['test error, %'].split(' ±')[0]} % vs "
        f"{table['cifar_plain20']['test error, %'].split(' ±')[0]} %; 95 % CI -2.73 to -1.64, t over "
        "seeds; after 12 epochs, 3 seeds): residual better.")
    assert first["gap"] == pytest.approx(0.0218667, abs=1e-6)  # the statistic is unchanged
    for verdict in content["verdicts"]:
        assert f"{html.escape(verdict['sentence'])}</p>" in page
        assert "points of error" in verdict["sentence"]
        assert "accuracy" not in verdict["sentence"]


def test_the_runs_table_explains_every_missing_interval_and_never_prints_p_0(page, content):
    rows = _html_table(page, "model", "seed")
    by_key = {(row["model"], int(row["seed"])): row for row in content["rows"]}
    assert "best val acc" not in rows[0]  # empty in every row: left out, and the note says so
    assert "Left out, empty in every row: best val acc." in page
    for cells in rows:
        row = by_key[(cells["model"], int(cells["seed"]))]
        gap = cells["Δ error vs plain (95 % CI)"]
        if row["residual"] == "false":
            assert gap == ""
        elif row["delta_ci_low"] is None:  # seed 0: its shard kept no predictions
            assert cells["seed"] == "0" and gap == f"{-100 * row['delta_vs_plain']:+.2f} ¹"
            assert cells["McNemar p"] == ""
        else:
            assert gap == (f"{-100 * row['delta_vs_plain']:+.2f} ({-100 * row['delta_ci_high']:+.2f}"
                           f" to {-100 * row['delta_ci_low']:+.2f})")
            assert cells["McNemar p"] == (
                "< 1e-300" if row["mcnemar_p"] == 0 else f"{row['mcnemar_p']:.3g}")
    assert sum(cells["McNemar p"] == "< 1e-300" for cells in rows) == 2  # underflowed to 0
    assert not any(cells["McNemar p"] == "0" for cells in rows)
    assert "¹ No interval and no McNemar p for this seed" in page
    with open(STUDY / "ablation.csv", newline="") as handle:
        assert [r["mcnemar_p"] for r in csv.DictReader(handle)][-2:] == ["0.0", "0.0"]


def test_the_provenance_shows_no_machine_path_and_folds_the_timings(page):
    provenance = page[page.index("<h2>Provenance</h2>"):]
    assert "/work/" not in provenance and str(REPO) not in provenance
    assert "<th>merged pipeline roots</th><td>seed0, seed1, seed2</td>" in provenance
    assert "&quot;pipeline_root&quot;: &quot;seed0&quot;" in provenance  # the first shard's own
    assert "imagefolder:…/cifar10/png" in provenance
    assert re.search(r"<details><summary>Wall time per component \(\d+ components, [\d,]+ s in "
                     r"all\)</summary><div class=\"scroll\"><table class=\"kv\">", provenance)


def test_every_figure_has_an_svg_beside_its_png(published):
    for key in report_files.FIGURES:
        png, svg = published[key], published[f"{key}_svg"]
        assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
        assert ElementTree.parse(svg).getroot().tag == f"{SVG}svg"
        assert svg.with_suffix(".png") == png


def test_the_curves_mark_the_learning_rate_drops(published):
    """The profile divides the rate by 10 after epochs 6 and 9: both marked in both panels."""
    root = ElementTree.parse(published["errors_svg"]).getroot()
    legend = [t.text for t in root.iter(f"{SVG}text")]
    assert "learning rate drop" in legend
    assert "line: mean over seeds; band: lowest to highest seed (min–max)" in legend


def test_the_terminal_summary_is_text_wrapped_to_the_terminal(content):
    text = report_files.terminal_summary(content, width=72)
    lines = text.splitlines()
    assert " ".join(lines[:2]) == TITLE
    assert re.match(r"[\d,]+ train and [\d,]+ test images · precision \w+", lines[2]), lines[2]
    assert all(len(line) <= 72 for line in lines), [line for line in lines if len(line) > 72]
    assert "![" not in text and "|" not in text and "<" not in text
    assert re.search(r"^cifar_resnet20 +3 +15\.81 ± 0\.35 +13\.61 ± 0\.61$", text, re.M)
    joined = " ".join(text.split())
    for verdict in content["verdicts"]:
        assert f"- {verdict['sentence']}" in joined


# --------------------------------------------------------------------------- how it reads


PROBE = """<script>
(function () {
  function blocks(element) {  // inside a container that scrolls sideways
    for (let p = element.parentElement; p; p = p.parentElement) {
      const overflow = getComputedStyle(p).overflowX;
      if (overflow === "auto" || overflow === "scroll") return true;
    }
    return false;
  }
  function name(element) {
    return element.tagName.toLowerCase() + (element.className ? "." + element.className : "")
      + " " + JSON.stringify((element.textContent || "").trim().slice(0, 50));
  }
  function probe() {
    document.querySelectorAll("details").forEach(function (d) { d.open = true; });
    const width = document.documentElement.clientWidth, overflowing = [];
    for (const element of document.body.querySelectorAll("*")) {
      if (blocks(element)) continue;
      const box = element.getBoundingClientRect();
      const clips = getComputedStyle(element).overflowX !== "visible";
      const spills = !clips && element.clientWidth > 0
        && element.scrollWidth > element.clientWidth + 1;
      if (box.right > width + 1 || box.left < -1 || spills)
        overflowing.push(name(element) + " right " + Math.round(box.right)
                         + " scrollWidth " + element.scrollWidth);
    }
    const result = {
      width: width, innerWidth: window.innerWidth,
      pageWidth: document.documentElement.scrollWidth, overflowing: overflowing,
      scrolling: Array.from(document.querySelectorAll(".scroll"))
        .filter(function (s) { return s.scrollWidth > s.clientWidth + 1; })
        .map(function (s) { return Array.from(s.querySelectorAll("th")).slice(0, 2)
          .map(function (th) { return th.textContent; }).join(", "); }),
      images: Array.from(document.images).map(function (i) {
        return [i.naturalWidth, Math.round(i.getBoundingClientRect().width)]; })};
    parent.postMessage(JSON.stringify(result), "*");
  }
  if (document.readyState === "complete") probe(); else window.addEventListener("load", probe);
})();
</script>"""


FRAME = """<!DOCTYPE html><html><body style="margin:0"><pre id="layout-probe"></pre>
<script>window.addEventListener("message", function (event) {
  document.getElementById("layout-probe").textContent = event.data; });</script>
<iframe src="%s" style="display:block;border:0;width:%dpx;height:30000px"></iframe>
</body></html>"""


def layout(page: str, width: int, folder: pathlib.Path, style: str = "") -> dict:
    """What ``PROBE`` finds in `page` (plus `style`) shown `width` px wide in headless
    Chromium: the viewport, the page's width, every element wider than the viewport or
    spilling its content and not inside a sideways-scrolling container, the containers that do
    scroll (by their first two header cells), and each image's natural and shown width.

    The page is shown in an iframe of that width (headless Chromium's window is at least 500
    px wide), as tall as the page, and its probe posts the result to the frame around it, whose
    DOM ``--dump-dom`` prints."""
    probed = folder / f"probe-{width}.html"
    probed.write_text(page.replace("</head>", f"<style>{style}</style></head>")
                      .replace("</body>", PROBE + "</body>"))
    (folder / "frame.html").write_text(FRAME % (probed.name, width))
    done = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={folder / 'profile'}",
         f"--window-size={max(width, 500) + 100},2000", "--virtual-time-budget=10000",
         "--dump-dom", (folder / "frame.html").as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="layout-probe">(.+?)</pre>', done.stdout, re.S)
    assert found, f"no probe result from Chromium (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian: apt-get install chromium); "
                             "the layout of report.html is checked in a headless browser")


@needs_chromium
@pytest.mark.parametrize("width", [390, 1300])
def test_nothing_is_wider_than_the_page(page, width, tmp_path):
    found = layout(page, width, tmp_path)
    assert found["innerWidth"] == found["width"] == width  # the viewport is what was asked
    assert found["overflowing"] == []
    assert found["pageWidth"] == width
    assert len(found["images"]) == 4 and all(natural > 0 and 0 < shown <= width
                                             for natural, shown in found["images"])
    # the per-run table is wider than a phone: it scrolls in its container; the per-model
    # table, the headline, fits
    assert found["scrolling"] == (["model, seed"] if width == 390 else [])


@needs_chromium
def test_the_probe_sees_a_table_that_does_not_scroll(page, tmp_path):
    """The check itself: with the tables' containers not scrolling, the per-run table sticks
    out of a phone's page, and the probe says so."""
    found = layout(page, 390, tmp_path, style=".scroll{overflow-x:visible !important}")
    assert found["pageWidth"] > 390
    assert any(item.startswith("table ") for item in found["overflowing"]), found["overflowing"]

