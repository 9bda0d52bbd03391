"""The report's tables and captions, shared by ablation.md, report.html and the terminal: the
title, the forest plot's rows, the per-model mean ± sd table and the per-run table with its
footnotes. Plain data in, strings out."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from resnet_ablation import comparison


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
    verdict's accuracy numbers negated (``comparison.error_points``); None without an interval."""
    rows = []
    for verdict in verdicts:
        a, b = verdict["models"]
        gap, low, high = (comparison.error_points(verdict["gap"], verdict["ci_low"],
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


def display_rows(rows: Sequence[comparison.Row]) -> list[dict[str, str]]:
    """The per-run table as people read it: errors in %, the residual row's error gap to its
    plain twin in points with its interval, p-values never shown as 0."""
    return [{"model": row["model"], "seed": str(row["seed"]), "status": row["status"]
             + (f" (epoch {row['diverged_epoch']})" if row["diverged_epoch"] else ""),
             "shortcut": row["shortcut"], "params": f"{row['params']:,}",
             "epochs": str(row["epochs"]), "train error": _percent(row["train_error"]),
             "eval error": _percent(row["eval_error"])
             + (f" ({row['eval_split']})" if row["eval_error"] is not None else ""),
             GAP_COLUMN: _gap(row), "McNemar p": comparison.format_p(row["mcnemar_p"]),
             "best val acc": _percent(row["best_val_accuracy"]),
             "img/s": _number(row["images_per_second"], ".0f")} for row in rows]


def _percent(value: float | None) -> str:
    return "" if value is None else f"{value * 100:.2f} %"


def _number(value: float | None, spec: str) -> str:
    return "" if value is None else format(value, spec)


def _gap(row: comparison.Row) -> str:
    if row["delta_vs_plain"] is None:
        return ""
    gap, low, high = comparison.error_points(row["delta_vs_plain"], row["delta_ci_low"],
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
    "²": "No gap: this residual net's plain twin with the same seed is not among the merged "
         "runs (in a study run as shards, it may not have run yet), one of the two did not "
         "finish, or they ran different numbers of epochs.",
}


def runs_table(rows: Sequence[comparison.Row]) -> tuple[list[dict[str, str]], list[str], list[str]]:
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
                 f"below {comparison.SMALLEST_P:.0e} read < {comparison.SMALLEST_P:.0e}. The "
                 "verdicts over several seeds use a t-interval over the per-seed gaps instead."
                 + (f" Left out, empty in every row: {', '.join(dropped)}." if dropped and rows
                    else ""))
    return cells, columns, notes


BAND_NOTE = ("the line is the mean over seeds, the band spans the lowest to the highest seed "
             "(min–max); colour is the depth (a residual net and its plain twin share it), "
             "solid is residual, dashed is plain, dotted verticals are learning-rate drops.")
