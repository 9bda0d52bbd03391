"""What the ablation shows: rows, statistics and verdicts, on plain data (no TFX, no TensorFlow).

Input: one ``RunResult`` per (model, seed): its ``RunHistory``, its ``Predictions`` (per-example
predicted classes on the eval split and the fixed train subset) and the Evaluator's overall
metrics. Output: ``rows`` (one per run, ``COLUMNS`` first) and ``verdicts`` (one per comparison).

Statistics (all at 95 %):

- *Eval-set sampling*, one seed: two models' per-example correctness on the same examples
  (joined by record id) gives McNemar's exact test on the discordant pairs and Newcombe's
  score interval (1998, method 10) for the accuracy difference.
- *Seed-to-seed variation*, two or more seeds: a paired t-interval over the per-seed gaps
  (t quantile with n - 1 degrees of freedom, standard error sd / sqrt(n)).
- A model is *at chance* on a split when its correct count (pooled over seeds) is not above the
  upper end of the central 95 % interval of Binomial(n, majority-class rate).

A verdict names a winner only when its interval excludes 0; when both models are at chance it
says ``at_chance``; when no seed has a finished run of both, ``diverged`` (a net that failed to
train) or ``no_data``, which is also the verdict when no interval can be formed (one seed
without per-example predictions).
"""

from __future__ import annotations

import collections
import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from scipy import stats as scipy_stats

from resnet_ablation.contracts import LayerResponses, Predictions, RunHistory, SplitPredictions, finite
from resnet_ablation.model_specs import get_spec

CONFIDENCE = 0.95

COLUMNS = ("model", "family", "depth", "residual", "params", "epochs", "seed", "train_loss",
           "val_loss", "val_accuracy", "best_val_accuracy", "delta_vs_plain", "images_per_second")
"""The agreed leading columns, in this order, in every CSV, JSON and Markdown table."""

STATUS_COLUMNS = ("status", "train_error", "eval_error", "eval_split", "delta_ci_low",
                  "delta_ci_high")
"""The columns right after ``COLUMNS``: run status, final errors (fractions), which split the
eval numbers are on, and the 95 % interval of delta_vs_plain (eval-set sampling, this seed)."""

EXTRA_COLUMNS = ("shortcut", "mcnemar_p", "diverged_epoch", "val_split", "val_source",
                 "history_val_accuracy", "eval_accuracy_diff", "eval_example_count")
"""Then: the shortcut option, McNemar's p for the residual-vs-plain pair of this seed, the
epoch a diverged run failed in, the split of the per-epoch val_* curve, where val_accuracy
came from ("evaluator" or "history"), the history's own final val_accuracy, TFMA's
candidate-minus-baseline accuracy, and how many examples the Evaluator saw."""

ALL_COLUMNS = COLUMNS + STATUS_COLUMNS + EXTRA_COLUMNS

CONCLUSIONS = ("residual_better", "plain_better", "deeper_better", "deeper_worse",
               "not_distinguishable", "at_chance", "diverged", "no_data")

Row = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class RunResult:
    """Everything known about one (model, seed) run."""

    history: RunHistory
    predictions: Predictions | None = None
    metrics: Mapping[str, float] | None = None  # the Evaluator's overall metrics
    responses: LayerResponses | None = None  # the paper's Fig. 7 diagnostic (finished runs)

    @property
    def key(self) -> tuple[str, int]:
        return self.history.model, self.history.seed

    @property
    def ok(self) -> bool:
        return self.history.status == "ok"

    def split(self, split: str) -> SplitPredictions | None:
        """Per-example predictions on "eval" or "train" (None for unfinished runs)."""
        return getattr(self.predictions, split) if self.predictions and self.ok else None

    def accuracy(self, split: str) -> float | None:
        """Final accuracy on "eval" (the Evaluator's, else predictions, else history) or "train"
        (predictions on the train subset, else the history's clean train accuracy)."""
        if not self.ok:
            return None
        final = self.history.final
        if split == "eval":
            candidates = [finite((self.metrics or {}).get("accuracy")),
                          self.predictions and self.predictions.eval.accuracy,
                          final and final.val_accuracy]
        else:
            candidates = [self.predictions and self.predictions.train.accuracy,
                          final and final.clean_train_accuracy]
        return next((c for c in candidates if c is not None), None)


# --------------------------------------------------------------------------- statistics


@dataclasses.dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float

    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def mcnemar_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value for `b` and `c` discordant pairs (1.0 when none)."""
    if b + c == 0:
        return 1.0
    return min(1.0, 2 * float(scipy_stats.binom.cdf(min(b, c), b + c, 0.5)))


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> Interval:
    """Wilson's score interval for a binomial proportion."""
    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    z = float(scipy_stats.norm.ppf(0.5 + confidence / 2))
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return Interval(p, centre - half, centre + half)


def paired_difference(correct_a: Sequence[bool], correct_b: Sequence[bool],
                      confidence: float = CONFIDENCE) -> tuple[Interval, float]:
    """Accuracy of A minus accuracy of B on the same examples: Newcombe's method-10 interval
    and McNemar's exact p-value. Raises ValueError for empty or unequal-length inputs."""
    if not correct_a or len(correct_a) != len(correct_b):
        raise ValueError(f"need two equally long, non-empty outcome lists, got "
                         f"{len(correct_a)} and {len(correct_b)}")
    table = collections.Counter(zip(map(bool, correct_a), map(bool, correct_b)))
    both, only_a, only_b = table[True, True], table[True, False], table[False, True]
    neither, n = table[False, False], len(correct_a)
    p1, p2 = (both + only_a) / n, (both + only_b) / n
    first, second = (wilson_interval(both + only, n, confidence) for only in (only_a, only_b))
    (l1, u1), (l2, u2) = (first.low, first.high), (second.low, second.high)
    margins = (both + only_a) * (only_b + neither) * (both + only_b) * (only_a + neither)
    phi = (both * neither - only_a * only_b) / math.sqrt(margins) if margins else 0.0
    delta = math.sqrt(max((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0))
    epsilon = math.sqrt(max((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0))
    theta = p1 - p2
    return Interval(theta, theta - delta, theta + epsilon), mcnemar_p(only_a, only_b)


def t_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """Mean of `values` with its t-interval (n - 1 degrees of freedom, se = sd / sqrt(n));
    raises ValueError with fewer than two values."""
    if len(values) < 2:
        raise ValueError(f"a t-interval needs at least two values, got {len(values)}")
    mean = statistics.fmean(values)
    half = (float(scipy_stats.t.ppf(0.5 + confidence / 2, len(values) - 1))
            * statistics.stdev(values) / math.sqrt(len(values)))
    return Interval(mean, mean - half, mean + half)


def majority_rate(labels: Sequence[int]) -> float:
    """Share of the most frequent label: the accuracy of always guessing it."""
    return max(collections.Counter(labels).values()) / len(labels)


def at_chance(correct: int, n: int, chance: float, confidence: float = CONFIDENCE) -> bool:
    """True unless `correct` of `n` is above the central `confidence` interval of
    Binomial(n, chance), i.e. the model is not distinguishably better than guessing."""
    return bool(correct <= scipy_stats.binom.ppf(0.5 + confidence / 2, n, chance))


# --------------------------------------------------------------------------- rows


def rows(results: Iterable[RunResult]) -> list[Row]:
    """One row per run (``ALL_COLUMNS``), sorted by family, depth, plain first, seed.

    Accuracies and errors are fractions in [0, 1]; None where unknown (e.g. everything measured
    after training on a diverged run). ``best_val_accuracy`` only when the per-epoch curve is on
    a validation split (never selected on test). ``delta_vs_plain`` and its interval: residual
    rows whose plain twin ran with the same seed. Raises ValueError on duplicate runs.
    """
    results = list(results)
    keys = [r.key for r in results]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise ValueError(f"more than one run for (model, seed) {duplicates}")
    by_key = {r.key: r for r in results}
    table = [_row(r, by_key.get((get_spec(r.history.model).twin, r.history.seed)))
             for r in results]
    return sorted(table, key=lambda r: (r["family"], r["depth"], r["residual"], r["seed"]))


def _row(result: RunResult, twin: RunResult | None) -> Row:
    history, final = result.history, result.history.final
    metrics = {k: finite(v) for k, v in (result.metrics or {}).items()}
    val_accuracy, train_accuracy = result.accuracy("eval"), result.accuracy("train")
    curve = [e.val_accuracy for e in history.epochs if e.val_accuracy is not None]
    row = {
        "model": history.model, "family": history.family, "depth": history.depth,
        "residual": "true" if history.residual else "false", "params": history.params,
        "epochs": len(history.epochs), "seed": history.seed,
        "train_loss": final and final.train_loss,
        "val_loss": metrics.get("loss") if result.ok and metrics.get("loss") is not None
        else (final and final.val_loss if result.ok else None),
        "val_accuracy": val_accuracy,
        "best_val_accuracy": max(curve) if curve and history.val_split == "validation" else None,
        "images_per_second": statistics.median([e.images_per_second for e in history.epochs])
        if history.epochs else None,
        "status": history.status,
        "train_error": None if train_accuracy is None else 1 - train_accuracy,
        "eval_error": None if val_accuracy is None else 1 - val_accuracy,
        "eval_split": history.eval_split, "shortcut": history.shortcut,
        "diverged_epoch": history.diverged_epoch, "val_split": history.val_split,
        "val_source": "evaluator" if metrics.get("accuracy") is not None else "history",
        "history_val_accuracy": final and final.val_accuracy,
        "eval_accuracy_diff": metrics.get("accuracy_diff"),
        "eval_example_count": metrics.get("example_count"),
    }
    row.update(_delta_columns(result, twin) if history.residual else _no_delta())
    for column in ("val_accuracy", "best_val_accuracy", "history_val_accuracy"):
        if row[column] is not None and not 0.0 <= row[column] <= 1.0:
            raise ValueError(f"{row['model']} seed {row['seed']}: {column} {row[column]} "
                             "is not a fraction in [0, 1]")
    return {column: row[column] for column in ALL_COLUMNS}


def _no_delta() -> Row:
    return dict.fromkeys(("delta_vs_plain", "delta_ci_low", "delta_ci_high", "mcnemar_p"))


def _delta_columns(result: RunResult, twin: RunResult | None) -> Row:
    columns = _no_delta()
    if twin is None or len(twin.history.epochs) != len(result.history.epochs):
        return columns
    mine, theirs = result.accuracy("eval"), twin.accuracy("eval")
    if mine is not None and theirs is not None:
        columns["delta_vs_plain"] = mine - theirs
    paired = _paired(result.split("eval"), twin.split("eval"))
    if paired:
        interval, p_value = paired_difference(*paired)
        columns.update(delta_ci_low=interval.low, delta_ci_high=interval.high, mcnemar_p=p_value)
    return columns


def _paired(a: SplitPredictions | None, b: SplitPredictions | None
            ) -> tuple[list[bool], list[bool]] | None:
    """Per-example correctness of a and b on the ids both predicted, in a's order."""
    if a is None or b is None:
        return None
    theirs = b.correct_by_id()
    common = [(correct, theirs[i]) for i, correct in a.correct_by_id().items() if i in theirs]
    if not common:
        return None
    return [x for x, _ in common], [y for _, y in common]


# --------------------------------------------------------------------------- verdicts


def comparisons(results: Sequence[RunResult]) -> list[tuple[str, str, str]]:
    """(kind, a, b) for every comparison the study allows: each residual net against its plain
    twin, and within each family and kind (residual / plain) each depth against the next
    shallower one; a is the residual (resp. deeper) model."""
    names = sorted({r.history.model for r in results},
                   key=lambda n: (get_spec(n).family, get_spec(n).depth, get_spec(n).residual))
    pairs = [("residual_vs_plain", n, get_spec(n).twin) for n in names
             if get_spec(n).residual and get_spec(n).twin in names]
    for family in sorted({get_spec(n).family for n in names}):
        for residual in (False, True):
            ladder = [n for n in names
                      if get_spec(n).family == family and get_spec(n).residual == residual]
            pairs += [("depth", deeper, shallower) for shallower, deeper in zip(ladder, ladder[1:])]
    return pairs


def verdicts(results: Sequence[RunResult]) -> list[dict[str, Any]]:
    """One verdict per comparison (see ``comparisons``) and split (eval, then train).

    Each is ``{kind, family, models: [a, b], metric: "accuracy", split, gap, ci_low, ci_high,
    seeds, conclusion, sentence}`` with gap = accuracy(a) - accuracy(b) as a fraction; ``seeds``
    counts the seeds where both runs finished; ``p_value`` (McNemar) is added with one seed.
    ``sentence`` says it in error terms: error(a) - error(b) = -gap, in points, with both mean
    errors (see ``_sentence``).
    """
    by_model: dict[str, dict[int, RunResult]] = collections.defaultdict(dict)
    for result in results:
        by_model[result.history.model][result.history.seed] = result
    return [_verdict(kind, a, b, split, by_model[a], by_model[b])
            for kind, a, b in comparisons(results) for split in ("eval", "train")]


def _verdict(kind: str, a: str, b: str, split: str, runs_a: Mapping[int, RunResult],
             runs_b: Mapping[int, RunResult]) -> dict[str, Any]:
    seeds = sorted(set(runs_a) & set(runs_b))
    finished = [s for s in seeds if runs_a[s].ok and runs_b[s].ok]
    split_name = _split_name(runs_a, runs_b, split)
    verdict = {"kind": kind, "family": get_spec(a).family, "models": [a, b],
               "metric": "accuracy", "split": split_name, "gap": None, "ci_low": None,
               "ci_high": None, "seeds": len(finished), "conclusion": "no_data"}
    failed = sorted({(r.history.model, s, r.history.diverged_epoch) for s in seeds
                     for r in (runs_a[s], runs_b[s]) if r.history.status == "diverged"})
    if not finished:
        verdict["conclusion"] = "diverged" if failed else "no_data"
        return {**verdict, "sentence": _sentence_without_gap(verdict, failed)}
    interval, p_value, examples = _gap(runs_a, runs_b, finished, split)
    if interval is not None:
        verdict.update(gap=interval.estimate, ci_low=interval.low, ci_high=interval.high)
    if p_value is not None:
        verdict["p_value"] = p_value
    verdict["conclusion"] = _conclusion(kind, interval, runs_a, runs_b, finished, split)
    errors = tuple(_mean_error(runs, finished, split) for runs in (runs_a, runs_b))
    return {**verdict, "sentence": _sentence(verdict, split, examples, runs_a[finished[0]],
                                             failed, errors)}


def _mean_error(runs: Mapping[int, RunResult], seeds: Sequence[int], split: str
                ) -> float | None:
    """Mean over `seeds` of 1 - accuracy(split), the runs' final error as the rows and the
    summary give it; None when no seed knows it."""
    values = [1 - accuracy for s in seeds if (accuracy := runs[s].accuracy(split)) is not None]
    return statistics.fmean(values) if values else None


def _split_name(runs_a: Mapping[int, RunResult], runs_b: Mapping[int, RunResult],
                split: str) -> str:
    if split == "train":
        return "train"
    return next(iter({**runs_a, **runs_b}.values())).history.eval_split


def _gap(runs_a, runs_b, seeds: Sequence[int], split: str
         ) -> tuple[Interval | None, float | None, int | None]:
    """The gap's interval: t over seeds with several seeds, else Newcombe on the examples;
    with the number of examples of the first seed that has per-example predictions of both."""
    paired = [_paired(runs_a[s].split(split), runs_b[s].split(split)) for s in seeds]
    examples = next((len(p[0]) for p in paired if p), None)
    if len(seeds) >= 2:
        gaps = [runs_a[s].accuracy(split) - runs_b[s].accuracy(split) for s in seeds
                if runs_a[s].accuracy(split) is not None and runs_b[s].accuracy(split) is not None]
        return (t_interval(gaps) if len(gaps) >= 2 else None), None, examples
    if paired[0] is None:
        return None, None, None
    interval, p_value = paired_difference(*paired[0])
    return interval, p_value, examples


def _conclusion(kind: str, interval: Interval | None, runs_a, runs_b, seeds: Sequence[int],
                split: str) -> str:
    if _model_at_chance(runs_a, seeds, split) and _model_at_chance(runs_b, seeds, split):
        return "at_chance"
    if interval is None:
        return "no_data"  # one seed without per-example predictions, or one finished pair
    if not interval.excludes_zero():
        return "not_distinguishable"
    if kind == "residual_vs_plain":
        return "residual_better" if interval.low > 0 else "plain_better"
    return "deeper_better" if interval.low > 0 else "deeper_worse"


def _model_at_chance(runs: Mapping[int, RunResult], seeds: Sequence[int], split: str) -> bool:
    """At chance over `seeds` pooled (see ``at_chance``); from accuracies and the split's size
    when per-example predictions are missing, and False when nothing is known."""
    correct = total = 0
    chance = None
    for seed in seeds:
        predictions = runs[seed].split(split)
        if predictions is None or not predictions.ids:
            return False
        correct += round(predictions.accuracy * len(predictions.ids))
        total += len(predictions.ids)
        chance = majority_rate(predictions.labels)
    return at_chance(correct, total, chance)


def _sentence(verdict: Mapping[str, Any], split: str, examples: int | None,
              sample: RunResult, failed, errors: tuple[float | None, float | None]) -> str:
    """The verdict in error terms, as the report's tables show it: the error gap a - b in
    points (the negated accuracy gap, so its interval is [-ci_high, -ci_low]), the two mean
    errors over the seeds, the interval's source, epochs and seeds, then the conclusion."""
    a, b = verdict["models"]
    where = (f"On {verdict['split']}" + (f" ({examples:,} images" if examples else "")
             + (", inference mode, no augmentation)" if split == "train" and examples else
                ")" if examples else ""))
    epochs = len(sample.history.epochs)
    seeds = verdict["seeds"]
    setting = f"after {epochs} epoch{'s' * (epochs != 1)}, {seeds} seed{'s' * (seeds != 1)}"
    both = f"{errors[0] * 100:.2f} % vs {errors[1] * 100:.2f} %" if None not in errors else ""
    if verdict["gap"] is None:
        body = (f"{where}, {a} vs {b}" + (f" (error {both})" if both else "")
                + f" has no interval ({setting})")
    else:
        source = "t over seeds" if seeds >= 2 else "paired, on these images"
        gap, low, high = error_points(verdict["gap"], verdict["ci_low"], verdict["ci_high"])
        body = (f"{where}, {a} − {b} = {gap:+.2f} points of error (" + (f"{both}; " if both else "")
                + f"95 % CI {low:+.2f} to {high:+.2f}, {source}; {setting})")
        if "p_value" in verdict:
            body += f", McNemar p {p_relation(verdict['p_value'])}"
    words = {"residual_better": "residual better", "plain_better": "plain better",
             "deeper_better": "deeper better", "deeper_worse": "deeper worse"
             + (" (degradation)" if not get_spec(a).residual else ""),
             "not_distinguishable": "not distinguishable",
             "at_chance": "both at chance, no conclusion", "no_data": "no conclusion"}
    return f"{body}: {words[verdict['conclusion']]}." + _failures(failed)


def error_points(gap: float, low: float | None = None, high: float | None = None
                 ) -> tuple[float, float | None, float | None]:
    """An accuracy gap a - b (a fraction) and its interval as the error gap a - b in points:
    (-100 gap, -100 high, -100 low), None kept; 0 never shown as -0."""
    def points(value: float | None) -> float | None:
        return None if value is None else 0.0 - value * 100
    return points(gap), points(high), points(low)


SMALLEST_P = 1e-300
"""p-values below this (McNemar's exact test underflows to 0.0 on thousands of discordant
pairs) are shown as ``< 1e-300``, never as 0."""


def format_p(p_value: float | None) -> str:
    """`p_value` for people: 3 significant digits, ``< 1e-300`` below ``SMALLEST_P`` (an
    underflow to 0 included), empty for None."""
    if p_value is None:
        return ""
    return f"< {SMALLEST_P:.0e}" if p_value < SMALLEST_P else format(p_value, ".3g")


def p_relation(p_value: float) -> str:
    """``= 0.0123`` or ``< 1e-300``: what follows "p" in a sentence."""
    text = format_p(p_value)
    return text if text.startswith("<") else f"= {text}"


def _sentence_without_gap(verdict: Mapping[str, Any], failed) -> str:
    a, b = verdict["models"]
    return f"{a} vs {b} on {verdict['split']}: no seed with both runs finished." + _failures(failed)


def _failures(failed) -> str:
    return "".join(f" {model} seed {seed} diverged (non-finite loss in epoch {epoch})."
                   for model, seed, epoch in failed)


# --------------------------------------------------------------------------- seeds


SUMMARY_METRICS = ("train_loss", "val_loss", "val_accuracy", "best_val_accuracy",
                   "delta_vs_plain", "train_error", "eval_error", "images_per_second")


def summarize(table: Sequence[Row]) -> list[Row]:
    """One entry per (model, epochs) over its seeds, in order of first appearance: model,
    epochs, ``seeds`` (rows), ``ok`` (finished rows) and ``<metric>_mean`` / ``<metric>_std``
    (sample std) over the rows where the metric is known; None without values (std: < 2)."""
    groups: dict[tuple[str, int], list[Row]] = {}
    for row in table:
        groups.setdefault((row["model"], row["epochs"]), []).append(row)
    summary = []
    for (model, epochs), group in groups.items():
        entry = {"model": model, "epochs": epochs, "seeds": len(group),
                 "ok": sum(r["status"] == "ok" for r in group)}
        for metric in SUMMARY_METRICS:
            values = [r[metric] for r in group if r[metric] is not None]
            entry[f"{metric}_mean"] = statistics.fmean(values) if values else None
            entry[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
        summary.append(entry)
    return summary
