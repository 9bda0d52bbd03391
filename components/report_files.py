"""The report's files: ablation.csv/.json/.md, the figures and one self-contained report.html.

``write_report(report, output_dir)`` renders a ``Report`` (rows, verdicts and histories from
``components.ablation``, plus what the data and the run looked like); no TFX here. Every view
leads with the answer: the title (data, profile, seeds, date), the forest plot of the verdicts'
error gaps, the per-model mean ± sd table, the verdicts, then the per-run detail.
``terminal_summary(ablation.json's content)`` is the same headline as terminal text.
"""

from __future__ import annotations

import base64
import csv
import dataclasses
import html
import io
import json
import pathlib
import re
import shutil
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from components import ablation
from components.contracts import LayerResponses, RunHistory

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
    rule that chose a subset of the data, ``example_gen.subset_rule``; empty: all of it).
    ``provenance``: free-form key → value (configuration fingerprint, versions, code, hardware,
    run ids, ...), with ``config`` (the effective configuration), ``component_seconds``
    {id: s} and ``merged pipeline roots`` [path] optional.
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

    @property
    def title(self) -> str:
        return title(self.rows, self.provenance)


def write_report(report: Report, output_dir: pathlib.Path) -> dict[str, pathlib.Path]:
    """Writes ``REPORT_FILES`` into `output_dir` (created if needed); returns their paths.

    ablation.csv: ``ablation.ALL_COLUMNS``, full precision, None as empty. ablation.json:
    ``columns``, ``rows``, ``summary``, ``verdicts`` (objects), ``data``, ``provenance``,
    ``warnings``. ablation.md: the title, the forest plot, the per-model table, the verdicts,
    the per-run table and the figures. gaps.png: every verdict's error gap with its interval
    (``gap_rows``); errors.png: the paper's Fig. 6 view; curves.png: loss curves;
    responses.png: the paper's Fig. 7 view (layer response std; only when some run has
    responses); an SVG beside each. report.html: all of it, figures inlined.
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
    paths["html"].write_text(_html(report, figures))
    return paths


def _csv(rows: Sequence[ablation.Row]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(ablation.ALL_COLUMNS)
    writer.writerows([["" if row.get(c) is None else row[c] for c in ablation.ALL_COLUMNS]
                      for row in rows])
    return buffer.getvalue()


# --------------------------------------------------------------------------- the headline


def title(rows: Sequence[Mapping[str, Any]], provenance: Mapping[str, Any]) -> str:
    """"Residual vs plain on <data> — profile <p>, seeds <a–b>, <date>": the data (its kind
    and the last two parts of its path), the profile, the seeds of `rows` and the date of the
    newest pipeline run, each left out when the provenance does not say it."""
    config = provenance.get("config") or {}
    data = data_name(str(config.get("data") or ""))
    details = [f"profile {config['profile']}" if config.get("profile") else "",
               seed_range(sorted({int(row["seed"]) for row in rows})),
               max(re.findall(r"\d{4}-\d{2}-\d{2}", str(provenance.get("pipeline run id", ""))),
                   default="")]
    details = [detail for detail in details if detail]
    return ("Residual vs plain" + (f" on {data}" if data else "")
            + (" — " + ", ".join(details) if details else ""))


def data_name(data: str) -> str:
    """A data string as a title names it: ``kind:`` and the last two parts of its path
    (``imagefolder:/a/datasets/cifar10/png`` → ``imagefolder:cifar10/png``)."""
    kind, _, where = data.rpartition(":") if "/" in data else ("", "", data)
    kind = kind.split(":")[0]
    parts = [part for part in where.split("/") if part not in ("", ".", "..")]
    return (f"{kind}:" if kind else "") + "/".join(parts[-2:])


def seed_range(seeds: Sequence[int]) -> str:
    """``seed 3``, ``seeds 0–2`` (consecutive) or ``seeds 0, 2, 5``; empty without seeds."""
    if not seeds:
        return ""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    if list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}–{seeds[-1]}"
    return "seeds " + ", ".join(map(str, seeds))


def gap_rows(verdicts: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The forest plot's rows, one per verdict in its order: ``label`` ("a − b"), ``split``,
    ``gap``, ``low`` and ``high``: error(a) − error(b) and its 95 % interval in points, the
    verdict's accuracy numbers negated (``ablation.error_points``); None without an interval."""
    rows = []
    for verdict in verdicts:
        a, b = verdict["models"]
        gap, low, high = (ablation.error_points(verdict["gap"], verdict["ci_low"],
                                                verdict["ci_high"])
                          if verdict.get("gap") is not None else (None, None, None))
        rows.append({"label": f"{a} − {b}", "split": verdict["split"], "gap": gap, "low": low,
                     "high": high, "conclusion": verdict["conclusion"]})
    return rows


GAPS_CAPTION = ("Each row is one verdict: the error of A minus the error of B, in percentage "
                "points, with its 95 % interval (a t-interval over the per-seed gaps with two "
                "or more seeds; with one seed, Newcombe's paired interval on the same images). "
                "Left of the line at 0, A errs less. Filled dots: the eval split; open squares: "
                "training error (inference mode, no augmentation).")


def model_table(summary: Sequence[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]
                ) -> tuple[list[dict[str, str]], list[str]]:
    """The per-model table (cells, columns): per summary entry the model, its seeds (finished
    of all, when some did not finish) and the mean ± sample sd over seeds of its eval error and
    clean training error, in %; an epochs column only when the entries differ in epochs."""
    eval_split = next((row["eval_split"] for row in rows if row.get("eval_split")), "eval")
    errors = {f"{eval_split} error, %": "eval_error", "training error, %": "train_error"}
    cells = [{"model": entry["model"], "epochs": str(entry["epochs"]),
              "seeds": str(entry["ok"]) if entry["ok"] == entry["seeds"]
              else f"{entry['ok']} of {entry['seeds']} finished",
              **{column: mean_sd(entry[f"{key}_mean"], entry[f"{key}_std"])
                 for column, key in errors.items()}} for entry in summary]
    epochs = ["epochs"] if len({entry["epochs"] for entry in summary}) > 1 else []
    return cells, ["model", *epochs, "seeds", *errors]


def mean_sd(mean: float | None, sd: float | None) -> str:
    """A fraction's mean ± sd in % (the unit is in the column's name): ``15.81 ± 0.35``,
    ``15.81`` without sd, empty without mean."""
    if mean is None:
        return ""
    return f"{mean * 100:.2f}" + (f" ± {sd * 100:.2f}" if sd is not None else "")


MODEL_TABLE_NOTE = ("Mean ± sample standard deviation over seeds of each model's final error "
                    "(1 − accuracy); training error in inference mode, without augmentation, on "
                    "the fixed train subset, as the paper measures it.")


# --------------------------------------------------------------------------- the runs


DISPLAY_COLUMNS = ("model", "seed", "status", "shortcut", "params", "epochs", "train error",
                   "eval error", "Δ error vs plain (95 % CI)", "McNemar p", "best val acc",
                   "img/s")
GAP_COLUMN = "Δ error vs plain (95 % CI)"


def display_rows(rows: Sequence[ablation.Row]) -> list[dict[str, str]]:
    """The per-run table as people read it: errors in %, the residual row's error gap to its
    plain twin in points with its interval, p-values never shown as 0."""
    return [{"model": row["model"], "seed": str(row["seed"]), "status": row["status"]
             + (f" (epoch {row['diverged_epoch']})" if row["diverged_epoch"] else ""),
             "shortcut": row["shortcut"], "params": f"{row['params']:,}",
             "epochs": str(row["epochs"]), "train error": _percent(row["train_error"]),
             "eval error": _percent(row["eval_error"])
             + (f" ({row['eval_split']})" if row["eval_error"] is not None else ""),
             GAP_COLUMN: _gap(row), "McNemar p": ablation.format_p(row["mcnemar_p"]),
             "best val acc": _percent(row["best_val_accuracy"]),
             "img/s": _number(row["images_per_second"], ".0f")} for row in rows]


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f} %"


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _gap(row: ablation.Row) -> str:
    if row["delta_vs_plain"] is None:
        return ""
    gap, low, high = ablation.error_points(row["delta_vs_plain"], row["delta_ci_low"],
                                           row["delta_ci_high"])
    text = f"{gap:+.2f}"
    if low is not None:
        text += f" ({low:+.2f} to {high:+.2f})"
    return text


FOOTNOTES = {
    "¹": "No interval and no McNemar p for this seed: the per-example predictions of both "
         "nets were not available (e.g. a shard published before they were kept), so the paired "
         "comparison cannot be made; the gap is from the two nets' accuracies, and the "
         "verdicts over seeds use it.",
    "²": "No gap: this residual net or its plain twin with the same seed did not finish, or "
         "they ran different numbers of epochs.",
}


def runs_table(rows: Sequence[ablation.Row]) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """The per-run table as the report shows it: (cells, columns, notes). Every residual row
    without an interval, or without a gap, carries a footnote mark saying why (``FOOTNOTES``);
    columns empty in every row are left out, and the notes name them."""
    cells = display_rows(rows)
    used = set()
    for row, cell in zip(rows, cells):
        if row["residual"] == "true" and row["delta_ci_low"] is None:
            mark = "¹" if row["delta_vs_plain"] is not None else "²"
            cell[GAP_COLUMN] = f"{cell[GAP_COLUMN] or '—'} {mark}"
            used.add(mark)
    columns = [c for c in DISPLAY_COLUMNS if any(cell[c] for cell in cells)]
    dropped = [c for c in DISPLAY_COLUMNS if c not in columns]
    notes = [f"{mark} {text}" for mark, text in FOOTNOTES.items() if mark in used]
    notes.append("Errors are 1 − accuracy. Δ error vs plain, on the residual net's row: its "
                 "eval error minus its plain twin's (same seed), in points (below 0: the "
                 "residual net errs less), with the 95 % interval of the paired comparison on "
                 "the same images (Newcombe's score interval) and McNemar's exact p; p-values "
                 f"below {ablation.SMALLEST_P:.0e} read < {ablation.SMALLEST_P:.0e}. The "
                 "verdicts over several seeds use a t-interval over the per-seed gaps instead."
                 + (f" Left out, empty in every row: {', '.join(dropped)}." if dropped and rows
                    else ""))
    return cells, columns, notes


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


BAND_NOTE = ("the line is the mean over seeds, the band spans the lowest to the highest seed "
             "(min–max); colour is the depth (a residual net and its plain twin share it), "
             "solid is residual, dashed is plain, dotted verticals are learning-rate drops.")


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
    to `width` (default: the terminal's, at least 40), no Markdown and no images."""
    width = max(width or shutil.get_terminal_size().columns, 40)
    rows, summary = content.get("rows", []), content.get("summary", [])
    cells, columns = model_table(summary, rows)
    verdicts = [_bullet(v["sentence"], width) for v in content.get("verdicts", [])]
    blocks = [textwrap.fill(title(rows, content.get("provenance", {})), width),
              plain_table(cells, columns) if cells else "No runs.",
              "\n".join(["Verdicts:", *(verdicts or ["- none: the study has no twin pair."])])]
    if content.get("warnings"):
        blocks.append("\n".join(["Data warnings:", *(_bullet(w, width)
                                                      for w in content["warnings"])]))
    return "\n\n".join(blocks) + "\n"


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


# --------------------------------------------------------------------------- the page


_STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#222;line-height:1.4}
main{max-width:1200px;margin:0 auto;padding:.8em 1em}
h1{font-size:1.5em}
h1,h2,p,li,summary,figcaption{overflow-wrap:anywhere}
figure{margin:.5em 0}
figcaption,.note{font-size:.9em;color:#444}
.scroll{overflow-x:auto;max-width:100%}
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
.kv th,.kv td{white-space:normal;overflow-wrap:anywhere;text-align:left;vertical-align:top}
.kv th{overflow-wrap:break-word;min-width:6em}
.models th{white-space:normal}
pre{white-space:pre-wrap;overflow-wrap:anywhere}
@media (max-width:480px){main{padding:.6em .7em}table{font-size:.8em}td,th{padding:.2em .3em}}
"""


def _html(report: Report, figures: Mapping[str, bytes]) -> str:
    escape = html.escape
    models, model_columns = model_table(report.summary, report.rows)
    runs, run_columns, notes = runs_table(report.rows)
    body = [f"<h1>{escape(report.title)}</h1>",
            _figure("gaps in error with 95 % intervals, one row per verdict",
                    figures.get("gaps"), GAPS_CAPTION),
            "<h2>Error per model</h2>", _html_table(models, model_columns, "models"),
            f'<p class="note">{escape(MODEL_TABLE_NOTE)}</p>', "<h2>Verdicts</h2>"]
    body += [f'<p class="verdict {escape(v["conclusion"])}"><span class="tag">'
             f'{escape(v["conclusion"])}</span>{escape(v["sentence"])}</p>'
             for v in report.verdicts] or ["<p>No comparison: the study has no twin pair.</p>"]
    if report.warnings:
        body += ["<h2>Data warnings</h2>"] + [f'<p class="warning">{escape(w)}</p>'
                                              for w in report.warnings]
    body += ["<h2>Runs</h2>", _html_table(runs, run_columns),
             *(f'<p class="note">{escape(note)}</p>' for note in notes),
             "<h2>Error curves</h2>", _figure("error curves", figures.get("errors"),
                                              f"Error (%) per epoch: {BAND_NOTE}"),
             "<h2>Loss curves</h2>", _figure("loss curves", figures.get("curves"),
                                             f"Cross-entropy per epoch: {BAND_NOTE}"),
             *(["<h2>Layer responses (paper Fig. 7)</h2>",
                _figure("standard deviation of layer responses", figures["responses"],
                        "Standard deviation of each 3×3 layer's response (its BatchNorm output, "
                        "before the addition and the ReLU) of the trained model on eval images, "
                        "in layer order and sorted by magnitude; mean over seeds with a min–max "
                        "band, on a log axis when the values span more than a decade. The paper "
                        "finds residual functions respond more weakly than plain layers, and "
                        "more so in deeper nets.")]
               if "responses" in figures else []),
             "<h2>Data</h2>", _data_section(report.data),
             "<h2>Provenance</h2>", _provenance_section(report.provenance)]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{escape(report.title)}</title><style>{_STYLE}</style></head><body><main>\n"
            + "\n".join(body) + "\n</main></body></html>\n")


def _figure(alt: str, png: bytes | None, caption: str) -> str:
    if png is None:
        return ""
    return (f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,'
            f'{base64.b64encode(png).decode("ascii")}"><figcaption>{html.escape(caption)}'
            "</figcaption></figure>")


def _html_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str],
                css_class: str = "") -> str:
    """A table in a container that scrolls sideways when the table is wider than the page."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(row.get(c, '')))}</td>"
                                    for c in columns) + "</tr>" for row in rows)
    table = f'<table class="{css_class}">' if css_class else "<table>"
    return (f'<div class="scroll">{table}<thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


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


# --------------------------------------------------------------------------- provenance


def _provenance_section(provenance: Mapping[str, Any]) -> str:
    """The provenance as a key → value table (empty values left out), paths shown relative
    (``relative_paths``), the component times and the effective configuration each folded in a
    ``<details>``."""
    if not provenance:
        return "<p>No provenance was recorded.</p>"
    shown = relative_paths(provenance, pipeline_roots(provenance))
    scalars = [{"what": key, "value": _text(value)} for key, value in shown.items()
               if key not in ("config", "component_seconds") and _text(value)]
    parts = [_wrapped_table(scalars)]
    seconds = shown.get("component_seconds")
    if seconds:
        parts.append(f"<details><summary>Wall time per component ({len(seconds)} components, "
                     f"{sum(seconds.values()):,.0f} s in all)</summary>"
                     + _html_table([{"component": c, "seconds": f"{s:,.1f}"}
                                    for c, s in seconds.items()], ["component", "seconds"], "kv")
                     + "</details>")
    if shown.get("config"):
        parts.append("<details><summary>Effective configuration</summary><pre>"
                     + html.escape(json.dumps(shown["config"], indent=2, sort_keys=True,
                                                  ensure_ascii=False))
                     + "</pre></details>")
    parts.append('<p class="note">Paths are shown from the pipeline root or shard folder they '
                 "are in (named by its folder), other absolute paths by their last two parts; "
                 "ablation.json keeps them in full.</p>")
    return "\n".join(parts)


def pipeline_roots(provenance: Mapping[str, Any]) -> list[str]:
    """The absolute pipeline roots and shard folders the provenance names: the merged roots
    and the configuration's ``pipeline_root``."""
    config = provenance.get("config") or {}
    roots = [*provenance.get("merged pipeline roots", []), config.get("pipeline_root") or ""]
    return [str(root).rstrip("/") for root in roots if str(root).startswith("/")]


_ABSOLUTE_PATH = re.compile(r"(?<![\w./~-])/(?!/)[^\s,;'\"()<>\[\]{}]+")


def relative_paths(value: Any, roots: Sequence[str]) -> Any:
    """`value` (strings, lists and mappings, nested) with every absolute path in its strings
    shown relative: under one of `roots` as ``<root's folder name>/<rest>``, any other by its
    last two parts after ``…/``. URLs (``gs://``, ``https://``) are left as they are."""
    if isinstance(value, str):
        return _ABSOLUTE_PATH.sub(lambda match: _short_path(match.group(), roots), value)
    if isinstance(value, Mapping):
        return {key: relative_paths(item, roots) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [relative_paths(item, roots) for item in value]
    return value


def _short_path(path: str, roots: Sequence[str]) -> str:
    for root in sorted(roots, key=len, reverse=True):
        if path == root or path.startswith(root + "/"):
            return (pathlib.PurePosixPath(root).name or root) + path[len(root):]
    parts = [part for part in path.split("/") if part]
    return "…/" + "/".join(parts[-2:]) if len(parts) > 2 else path


def _wrapped_table(rows: Sequence[Mapping[str, str]]) -> str:
    body = "".join(f"<tr><th>{html.escape(r['what'])}</th><td>"
                   f"{html.escape(r['value'])}</td></tr>" for r in rows)
    return f'<table class="kv"><tbody>{body}</tbody></table>'


def _text(value: Any) -> str:
    if isinstance(value, Mapping):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)
