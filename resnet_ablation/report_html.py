"""report.html: the report as one self-contained page, figures inlined, tables that scroll
sideways on a narrow screen, provenance with paths shown relative to their pipeline root."""

from __future__ import annotations

import base64
import html
import json
import pathlib
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from resnet_ablation.report_tables import (
    BAND_NOTE,
    GAPS_CAPTION,
    MODEL_TABLE_NOTE,
    model_table,
    runs_table,
)

if TYPE_CHECKING:
    from resnet_ablation import report_files


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


def page(report: report_files.Report, figures: Mapping[str, bytes]) -> str:
    """report.html: the ``Report`` as one self-contained page (`figures`, PNG bytes by
    ``report_files.FIGURES`` key, inlined), readable from 390 to 1300 px wide."""
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
