"""The report's files: ablation.csv/.json/.md, the figures and one self-contained report.html.

``write_report(report, output_dir)`` renders a ``Report`` (rows, verdicts and histories from
``components.ablation``, plus what the data and the run looked like); no TFX here.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import pathlib
from collections.abc import Mapping, Sequence
from typing import Any

from components import ablation
from components.contracts import LayerResponses, RunHistory

REPORT_FILES = {"csv": "ablation.csv", "json": "ablation.json", "markdown": "ablation.md",
                "errors": "errors.png", "curves": "curves.png", "responses": "responses.png",
                "html": "report.html"}
TITLE = "Residual vs plain networks: ablation report"


@dataclasses.dataclass(frozen=True)
class Report:
    """Everything one report shows.

    ``data``: ``examples`` {split: count}, ``classes`` {split: {class: count}}, ``skipped``
    {split: {reason: count}}, ``anomalies`` [str], ``eval_split`` (its name), ``subset`` (the
    rule that chose a subset of the data, ``example_gen.subset_rule``; empty: all of it).
    ``provenance``: free-form key → value (configuration fingerprint, versions, code, hardware, run ids, ...),
    with ``config`` (the effective configuration) and ``component_seconds`` {id: s} optional.
    ``warnings``: data problems a user must see (printed by ``ablation run`` too).
    """

    rows: Sequence[ablation.Row]
    verdicts: Sequence[Mapping[str, Any]]
    histories: Sequence[RunHistory]
    responses: Mapping[tuple[str, int], LayerResponses] = dataclasses.field(default_factory=dict)
    data: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    provenance: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    warnings: Sequence[str] = ()

    @property
    def summary(self) -> list[ablation.Row]:
        return ablation.summarize(self.rows)


def write_report(report: Report, output_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes ``REPORT_FILES`` into `output_dir` (created if needed); returns their paths.

    ablation.csv: ``ablation.ALL_COLUMNS``, full precision, None as empty. ablation.json:
    ``columns``, ``rows``, ``summary``, ``verdicts`` (objects), ``data``, ``provenance``,
    ``warnings``. ablation.md: verdicts, then the display table. errors.png: the paper's
    Fig. 6 view; curves.png: loss curves; responses.png: the paper's Fig. 7 view (layer
    response std; only when some run has responses). report.html: all of it, figures inlined.
    """
    from components import plots  # matplotlib only when a report is written

    output_dir = pathlib.Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    paths = {key: output_dir / name for key, name in REPORT_FILES.items()}
    paths["csv"].write_text(_csv(report.rows))
    paths["json"].write_text(json.dumps(
        {"columns": ablation.ALL_COLUMNS, "rows": report.rows, "summary": report.summary,
         "verdicts": report.verdicts, "data": report.data, "provenance": report.provenance,
         "warnings": report.warnings}, indent=2, allow_nan=False, default=str))
    plots.plot_error_curves(report.histories, paths["errors"])
    plots.plot_loss_curves(report.histories, paths["curves"])
    if report.responses:
        plots.plot_response_stds(report.responses, paths["responses"])
    else:
        del paths["responses"]
    paths["markdown"].write_text(markdown(report))
    figures = {key: paths[key].read_bytes() for key in ("errors", "curves", "responses")
               if key in paths}
    paths["html"].write_text(_html(report, figures))
    return paths


def _csv(rows: Sequence[ablation.Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ablation.ALL_COLUMNS)
    writer.writerows([["" if row.get(c) is None else row[c] for c in ablation.ALL_COLUMNS]
                      for row in rows])
    return buffer.getvalue()


# --------------------------------------------------------------------------- display


DISPLAY_COLUMNS = ("model", "seed", "status", "shortcut", "params", "epochs", "train error",
                   "eval error", "Δ vs plain (95 % CI)", "McNemar p", "best val acc", "img/s")


def display_rows(rows: Sequence[ablation.Row]) -> list[dict[str, str]]:
    """The per-run table as people read it: errors in %, the gap in points with its interval."""
    return [{"model": row["model"], "seed": str(row["seed"]), "status": row["status"]
             + (f" (epoch {row['diverged_epoch']})" if row["diverged_epoch"] else ""),
             "shortcut": row["shortcut"], "params": f"{row['params']:,}",
             "epochs": str(row["epochs"]), "train error": _percent(row["train_error"]),
             "eval error": _percent(row["eval_error"])
             + (f" ({row['eval_split']})" if row["eval_error"] is not None else ""),
             "Δ vs plain (95 % CI)": _gap(row), "McNemar p": _number(row["mcnemar_p"], ".3g"),
             "best val acc": _percent(row["best_val_accuracy"]),
             "img/s": _number(row["images_per_second"], ".0f")} for row in rows]


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f} %"


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _gap(row: ablation.Row) -> str:
    if row["delta_vs_plain"] is None:
        return ""
    text = f"{row['delta_vs_plain'] * 100:+.2f}"
    if row["delta_ci_low"] is not None:
        text += f" ({row['delta_ci_low'] * 100:+.2f} to {row['delta_ci_high'] * 100:+.2f})"
    return text


def markdown_table(cells: Sequence[Mapping[str, str]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row[c].replace("|", "\\|") for c in columns) + " |"
              for row in cells]
    return "\n".join(lines)


def markdown(report: Report) -> str:
    """Verdicts, warnings and the per-run table as Markdown (what ``ablation run`` prints).

    Every text from the data or the runs (class and file names in the warnings, anomaly
    descriptions, table cells) goes through ``markdown_text``: shown as written, never markup.
    """
    parts = [f"# {TITLE}", "## Verdicts",
             *(f"- {markdown_text(v['sentence'])}" for v in report.verdicts)]
    if report.warnings:
        parts += ["## Data warnings", *(f"- {markdown_text(w)}" for w in report.warnings)]
    cells = [{column: markdown_text(text) for column, text in row.items()}
             for row in display_rows(report.rows)]
    parts += ["## Runs", markdown_table(cells, DISPLAY_COLUMNS),
              "Errors are 1 − accuracy; Δ is residual − plain eval accuracy in points, its "
              "interval from the paired test on the same eval images (this seed).",
              "![error curves](errors.png)", "![loss curves](curves.png)"]
    if report.responses:
        parts.append("![layer responses](responses.png)")
    return "\n\n".join(parts) + "\n"


def markdown_text(text: str) -> str:
    """`text` as inert Markdown: ``&``, ``<`` and ``>`` as HTML entities (a class folder named
    ``<img src=x onerror=...>`` stays text, as in report.html), ``|`` as ``&#124;`` (it would
    split a table cell, even after a backslash) and line breaks as spaces (they would end a
    list item and start a block of their own)."""
    return html.escape(" ".join(text.splitlines()), quote=False).replace("|", "&#124;")


# --------------------------------------------------------------------------- the page


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222}
main{max-width:1200px;margin:0 auto;padding:1em 1.5em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ccc;padding:.2em .45em;text-align:right;white-space:nowrap}
td:first-child,th:first-child{text-align:left}
th{background:#f3f3f3}
img{max-width:100%;height:auto}
.verdict{margin:.3em 0;padding:.35em .6em;border-left:4px solid #999;background:#fafafa}
.residual_better,.deeper_better{border-color:#2a7}
.plain_better,.deeper_worse{border-color:#c53}
.diverged{border-color:#a0a}
.tag{font:bold .75em monospace;margin-right:.5em}
.warning{color:#a40}
.wrap{overflow-wrap:anywhere;white-space:normal;text-align:left}
"""


def _html(report: Report, figures: Mapping[str, bytes]) -> str:
    escape = html.escape
    body = [f"<h1>{escape(TITLE)}</h1>", "<h2>Verdicts</h2>"]
    body += [f'<p class="verdict {escape(v["conclusion"])}"><span class="tag">'
             f'{escape(v["conclusion"])}</span>{escape(v["sentence"])}</p>'
             for v in report.verdicts] or ["<p>No comparison: the study has no twin pair.</p>"]
    if report.warnings:
        body += ["<h2>Data warnings</h2>"] + [f'<p class="warning">{escape(w)}</p>'
                                              for w in report.warnings]
    body += ["<h2>Runs</h2>", _html_table(display_rows(report.rows), DISPLAY_COLUMNS),
             "<p>Errors are 1 − accuracy. Δ vs plain: residual − plain accuracy on the eval "
             "split, in points, with the 95 % interval of a paired comparison on the same "
             "images (Newcombe's score interval; McNemar's exact test gives p). A verdict over "
             "several seeds uses a t-interval over the per-seed gaps instead.</p>",
             "<h2>Error curves</h2>", _img("error curves", figures["errors"]),
             "<h2>Loss curves</h2>", _img("loss curves", figures["curves"]),
             *(["<h2>Layer responses (paper Fig. 7)</h2>",
                _img("standard deviation of layer responses", figures["responses"]),
                "<p>Standard deviation of each 3×3 layer's response (its BatchNorm output, "
                "before the addition and the ReLU) of the trained model on eval images, in "
                "layer order and sorted by magnitude. The paper finds residual functions "
                "respond more weakly than plain layers, and more so in deeper nets.</p>"]
               if "responses" in figures else []),
             "<h2>Data</h2>", _data_section(report.data),
             "<h2>Provenance</h2>", _provenance_section(report.provenance)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(TITLE)}</title><style>{_STYLE}</style></head><body><main>\n"
            + "\n".join(body) + "\n</main></body></html>\n")


def _img(alt: str, png: bytes) -> str:
    return (f'<img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode("ascii")}">')


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>"
                                    for c in columns) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_section(data: Mapping[str, Any]) -> str:
    if not data:
        return "<p>No data summary was available to the report.</p>"
    examples, classes = data.get("examples", {}), data.get("classes", {})
    splits = list(examples)
    names = sorted({name for counts in classes.values() for name in counts})
    rows = [{"class": name, **{split: f"{classes.get(split, {}).get(name, 0):,}"
                               for split in splits}} for name in names]
    rows.append({"class": "all", **{split: f"{count:,}" for split, count in examples.items()}})
    parts = [f"<p>Eval split: {html.escape(str(data.get('eval_split', 'eval')))}.</p>",
             _html_table(rows, ["class", *splits])]
    if data.get("subset"):
        parts.insert(1, f"<p>Subset: {html.escape(data['subset'])}.</p>")
    skipped = data.get("skipped", {})
    skipped_rows = [{"split": split, "reason": reason, "files": f"{count:,}"}
                    for split, reasons in skipped.items() for reason, count in reasons.items()]
    parts.append(_html_table(skipped_rows, ["split", "reason", "files"]) if skipped_rows
                 else "<p>Skipped files: none.</p>")
    anomalies = data.get("anomalies", [])
    parts.append("<p>ExampleValidator anomalies: " + (
        "none.</p>" if not anomalies else "</p><ul>" + "".join(
            f"<li>{html.escape(a)}</li>" for a in anomalies) + "</ul>"))
    return "\n".join(parts)


def _provenance_section(provenance: Mapping[str, Any]) -> str:
    if not provenance:
        return "<p>No provenance was recorded.</p>"
    scalars = [{"what": key, "value": _text(value)} for key, value in provenance.items()
               if key not in ("config", "component_seconds")]
    parts = [_wrapped_table(scalars)]
    seconds = provenance.get("component_seconds")
    if seconds:
        parts.append(_html_table([{"component": c, "seconds": f"{s:,.1f}"}
                                  for c, s in seconds.items()], ["component", "seconds"]))
    if provenance.get("config"):
        parts.append("<details><summary>Effective configuration</summary><pre class=wrap>"
                     + html.escape(json.dumps(provenance["config"], indent=2, sort_keys=True))
                     + "</pre></details>")
    return "\n".join(parts)


def _wrapped_table(rows: Sequence[Mapping[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(r['what'])}</th><td class=wrap>"
                   f"{html.escape(r['value'])}</td></tr>" for r in rows)
    return f"<table><tbody>{body}</tbody></table>"


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)
