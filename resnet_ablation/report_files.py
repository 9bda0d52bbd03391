"""The report's files: ablation.csv/.json/.md, the figures and one self-contained report.html.

``write_report(report, output_dir)`` renders a ``Report`` (rows, verdicts and histories from
``resnet_ablation.comparison``, plus what the data and the run looked like); no TFX here. Every view
leads with the answer: the title (data, profile, seeds, date), the forest plot of the verdicts'
error gaps, the per-model mean ± sd table, the verdicts, then the per-run detail.
``terminal_summary(ablation.json's content)`` is the same headline as terminal text.
"""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import pathlib
import shutil
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from resnet_ablation import comparison, report_html
from resnet_ablation.contracts import LayerResponses, RunHistory
from resnet_ablation.report_tables import (
    BAND_NOTE,
    GAPS_CAPTION,
    MODEL_TABLE_NOTE,
    gap_rows,
    model_table,
    runs_table,
    title,
)

REPORT_FILES = {"csv": "ablation.csv", "json": "ablation.json", "markdown": "ablation.md",
                "gaps": "gaps.png", "gaps_svg": "gaps.svg", "errors": "errors.png",
                "errors_svg": "errors.svg", "curves": "curves.png", "curves_svg": "curves.svg",
                "responses": "responses.png", "responses_svg": "responses.svg",
                "html": "report.html"}
FIGURES = ("gaps", "errors", "curves", "responses")
"""The figures, each a PNG (``REPORT_FILES[key]``) with an SVG beside it (``key + "_svg"``)."""


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one report shows.

    ``data``: ``examples`` {split: count}, ``classes`` {split: {class: count}}, ``skipped``
    {split: {reason: count}}, ``anomalies`` [str], ``eval_split`` (its name), ``subset`` (the
    rule that chose a subset of the data, ``components.example_gen_config.subset_rule``; empty:
    all of it).
    ``provenance``: free-form key → value (configuration fingerprint, versions, code, hardware,
    run ids, ...), with ``config`` (the effective configuration), ``component_seconds``
    {id: s} and ``merged pipeline roots`` [path] optional.
    ``warnings``: data problems a user must see (printed by ``ablation run`` too).
    """

    rows: Sequence[comparison.Row]
    verdicts: Sequence[Mapping[str, Any]]
    histories: Sequence[RunHistory]
    responses: Mapping[tuple[str, int], LayerResponses] = dataclasses.field(default_factory=dict)
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warnings: Sequence[str] = ()

    @property
    def summary(self) -> list[comparison.Row]:
        return comparison.summarize(self.rows)

    @property
    def title(self) -> str:
        return title(self.rows, self.provenance)


def write_report(report: Report, output_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes ``REPORT_FILES`` into `output_dir` (created if needed); returns their paths.

    ablation.csv: ``comparison.ALL_COLUMNS``, full precision, None as empty. ablation.json:
    ``columns``, ``rows``, ``summary``, ``verdicts`` (objects), ``data``, ``provenance``,
    ``warnings``. ablation.md: the title, the forest plot, the per-model table, the verdicts,
    the per-run table and the figures. gaps.png: every verdict's error gap with its interval
    (``gap_rows``); errors.png: the paper's Fig. 6 view; curves.png: loss curves;
    responses.png: the paper's Fig. 7 view (layer response std; only when some run has
    responses); an SVG beside each. report.html: all of it, figures inlined.
    """
    from resnet_ablation import plots  # matplotlib only when a report is written

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: output_dir / name for key, name in REPORT_FILES.items()}
    paths["csv"].write_text(_csv(report.rows))
    paths["json"].write_text(json.dumps(
        {"columns": comparison.ALL_COLUMNS, "rows": report.rows, "summary": report.summary,
         "verdicts": report.verdicts, "data": report.data, "provenance": report.provenance,
         "warnings": report.warnings}, indent=2, allow_nan=False, default=str))
    styles = plots.model_styles({h.model for h in report.histories}
                                | {model for model, _ in report.responses})
    plots.plot_gaps(gap_rows(report.verdicts), paths["gaps"])
    plots.plot_error_curves(report.histories, paths["errors"], styles)
    plots.plot_loss_curves(report.histories, paths["curves"], styles)
    if report.responses:
        plots.plot_response_stds(report.responses, paths["responses"], styles)
    else:
        del paths["responses"], paths["responses_svg"]
    paths["markdown"].write_text(markdown(report))
    figures = {key: paths[key].read_bytes() for key in FIGURES if key in paths}
    paths["html"].write_text(report_html.page(report, figures))
    return paths


def _csv(rows: Sequence[comparison.Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(comparison.ALL_COLUMNS)
    writer.writerows([["" if row.get(c) is None else row[c] for c in comparison.ALL_COLUMNS]
                      for row in rows])
    return buffer.getvalue()


def markdown_table(cells: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |"
              for row in cells]
    return "\n".join(lines)


# --------------------------------------------------------------------------- ablation.md


def markdown(report: Report) -> str:
    """The report as Markdown: title, forest plot, per-model table, verdicts, data warnings,
    per-run table with its notes, then the figures.

    Every text from the data or the runs (class and file names in the warnings, anomaly
    descriptions, table cells) goes through ``markdown_text``: shown as written, never markup.
    """
    def table(cells, columns):
        return markdown_table([{c: markdown_text(cell[c]) for c in columns} for cell in cells],
                              [markdown_text(c) for c in columns])

    models, model_columns = model_table(report.summary, report.rows)
    runs, run_columns, notes = runs_table(report.rows)
    parts = [f"# {markdown_text(report.title)}", "![gaps in error, 95 % intervals](gaps.png)",
             GAPS_CAPTION, "## Error per model", table(models, model_columns), MODEL_TABLE_NOTE,
             "## Verdicts", *(f"- {markdown_text(v['sentence'])}" for v in report.verdicts)]
    if report.warnings:
        parts += ["## Data warnings", *(f"- {markdown_text(w)}" for w in report.warnings)]
    parts += ["## Runs", table(runs, run_columns), *map(markdown_text, notes),
              "## Figures", f"Curves: {BAND_NOTE}", "![error curves](errors.png)",
              "![loss curves](curves.png)"]
    if report.responses:
        parts.append("![layer responses](responses.png)")
    return "\n\n".join(parts) + "\n"


def markdown_text(text: str) -> str:
    """`text` as inert Markdown: ``&``, ``<`` and ``>`` as HTML entities (a class folder named
    ``<img src=x onerror=...>`` stays text, as in report.html), ``|`` as ``&#124;`` (it would
    split a table cell, even after a backslash) and line breaks as spaces (they would end a
    list item and start a block of their own)."""
    return html.escape(" ".join(text.splitlines()), quote=False).replace("|", "&#124;")


# --------------------------------------------------------------------------- the terminal


def terminal_summary(content: Mapping[str, Any], width: int | None = None) -> str:
    """What ``ablation report`` prints, from ablation.json's `content`: the title, the
    per-model table, the verdicts and any data warnings, each block after a blank line, wrapped
    to `width` (default: the terminal's, at least 40), no Markdown and no images. Under the
    title, ``run_facts``: the images, precision and devices the study trained with."""
    width = max(width or shutil.get_terminal_size().columns, 40)
    rows, summary = content.get("rows", []), content.get("summary", [])
    cells, columns = model_table(summary, rows)
    verdicts = [_bullet(v["sentence"], width) for v in content.get("verdicts", [])]
    facts = run_facts(content)
    blocks = [textwrap.fill(title(rows, content.get("provenance", {})), width)
              + (f"\n{textwrap.fill(facts, width)}" if facts else ""),
              plain_table(cells, columns) if cells else "No runs.",
              "\n".join(["Verdicts:", *(verdicts or ["- none: the study has no twin pair."])])]
    if content.get("warnings"):
        blocks.append("\n".join(["Data warnings:", *(_bullet(w, width)
                                                      for w in content["warnings"])]))
    return "\n\n".join(blocks) + "\n"


def run_facts(content: Mapping[str, Any]) -> str:
    """What the study trained on and how, from ablation.json's `content`: "2,000 train and 500
    test images · precision float32 · CPU: AMD EPYC (2 cores)"; a part the content does not
    hold is left out (empty when none is there)."""
    data, provenance = content.get("data") or {}, content.get("provenance") or {}
    examples = data.get("examples") or {}
    eval_name = data.get("eval_split") or "eval"
    images = " and ".join(f"{count:,} {eval_name if split == 'eval' else split}"
                          for split, count in examples.items())
    parts = [f"{images} images" if images else "",
             "precision " + ", ".join(provenance.get("precision") or []),
             " / ".join(provenance.get("training devices") or [])]
    return " · ".join(part for part in parts if part and part != "precision ")


def plain_table(cells: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    """`cells` as aligned plain text: text left, numbers right, two spaces between columns."""
    widths = {c: max(len(c), *(len(cell[c]) for cell in cells)) for c in columns}
    def line(values: Mapping[str, str]) -> str:
        return "  ".join(values[c].ljust(widths[c]) if c == columns[0]
                         else values[c].rjust(widths[c]) for c in columns).rstrip()
    return "\n".join([line({c: c for c in columns}), *map(line, cells)])


def _bullet(text: str, width: int) -> str:
    """`text` as a wrapped list item; a number stays on the line of its ``%``."""
    glued = " ".join(text.split()).replace(" %", "\u00a0%")  # textwrap never breaks at U+00A0
    return textwrap.fill(glued, width, initial_indent="- ", subsequent_indent="  ",
                         break_on_hyphens=False).replace("\u00a0", " ")
