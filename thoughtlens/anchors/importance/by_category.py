"""Category-level results: which kinds of reasoning step carry importance, with honest uncertainty.

Input is a sentence table (`SentenceTable`, a pandas DataFrame with one row per sentence):
    trace_id: str, sentence_index: int, n_sentences: int (of its trace), text: str,
    tags: list[str] (may be empty), accuracy: float (for the convergence filter), and metric columns.
Build it from the published Thought Anchors files (`load_published`) or a run store (`load_store`).

The paper's aggregation rules are each an explicit field of `AggregationRules` (defaults = the paper's):
first tag only, `unknown` skipped, negative importance clipped to 0, sentences from the "convergence"
point on dropped, per-trace mean then mean +- SE across traces. With these defaults the published
counterfactual-KL table of the 20 Qwen-14B traces is reproduced exactly
(tests/anchors/importance/test_anchors_categories.py).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from thoughtlens import stats
from thoughtlens.anchors.importance.metrics import IMPORTANCE_METRICS
from thoughtlens.errors import StoreError, ThoughtlensError
from thoughtlens.jsonsafe import json_safe
from thoughtlens.trace.categories import CATEGORIES, UNKNOWN, first_tag, validate_tags
from thoughtlens.trace.published_files import read_chunks_labeled

DEFAULT_METRICS = ("counterfactual_importance_kl", "resampling_importance_kl", "forced_importance_kl")


@dataclass(frozen=True)
class AggregationRules:
    """How sentences become category numbers. Defaults reproduce the paper's published table.

    first_tag_only: a sentence counts under its first tag only (else under every tag it has).
    skip_unknown: drop sentences whose (counted) tag is `unknown`.
    clip_negative: importance values below 0 count as 0 (the paper's `x if x > 0 else 0`).
    drop_after_convergence: drop a trace's sentences from the first index i where `convergence_window`
        consecutive sentences all have accuracy > `convergence_high` or all < `convergence_low`.
    convergence_paper_bound: search i only in range(n - window - 1), as the paper's loop does; this
        ignores convergence that starts in the last window + 1 sentences (needed for 2,089 of 2,885).
    per_trace_mean: average within each trace first, then mean +- SE across traces (else pool sentences).
    """

    first_tag_only: bool = True
    skip_unknown: bool = True
    clip_negative: bool = True
    drop_after_convergence: bool = True
    convergence_window: int = 4
    convergence_high: float = 0.99
    convergence_low: float = 0.01
    convergence_paper_bound: bool = True
    per_trace_mean: bool = True


# ---- loading --------------------------------------------------------------------------------------


def load_published(directory: str | Path) -> pd.DataFrame:
    """The sentence table of published traces: DIR/*/problem_*/chunks_labeled.json (trace_id = "subdir/problem_N")."""
    directory = Path(directory)
    files = sorted(directory.glob("*/problem_*/chunks_labeled.json"))
    if not files:
        raise ThoughtlensError(
            f"no */problem_*/chunks_labeled.json under {directory}; pass the model folder, "
            "e.g. data/thought-anchors/deepseek-r1-distill-qwen-14b"
        )
    rows = []
    for f in files:
        trace_id = f"{f.parent.parent.name}/{f.parent.name}"
        # Shapes and types checked (DataError naming file, key and fix); sorted by chunk_idx.
        chunks = read_chunks_labeled(f, IMPORTANCE_METRICS)
        for c in chunks:
            tags = validate_tags(c.get("function_tags") or [], where=f"{f} chunk {c.get('chunk_idx')}")
            row = {
                "trace_id": trace_id,
                "sentence_index": int(c["chunk_idx"]),
                "n_sentences": len(chunks),
                "text": c.get("chunk", ""),
                "tags": tags,
            }
            row.update({k: _float(c.get(k)) for k in ("accuracy",) + IMPORTANCE_METRICS if k in c})
            rows.append(row)
    return pd.DataFrame(rows)


def load_store(store, run_id: str | None = None, labeler=None) -> pd.DataFrame:
    """The sentence table of one run of a RunStore: stored sentences (+ tags) joined with stored metrics.

    Sentences without stored tags are tagged by `labeler` when given (thoughtlens.trace.labelers), else left untagged.
    """
    runs = [r["run_id"] for r in store.runs()]
    if run_id is None:
        if len(runs) != 1:
            raise StoreError(f"{store.path} holds {len(runs)} runs ({', '.join(runs) or 'none'}); pass --run RUN_ID")
        run_id = runs[0]
    elif run_id not in runs:
        raise StoreError(
            f"no run '{run_id}' in {store.path} (runs: {', '.join(runs) or 'none'}); pass one of them with --run"
        )
    metrics = store.metrics(run_id)
    rows = []
    for problem_id in store.problems(run_id)["problem_id"]:
        trace = store.trace(run_id, problem_id)
        if trace is None:
            continue
        sents = trace["sentences"]
        tags = [s["tags"] for s in sents]
        if labeler is not None and any(t is None for t in tags):
            from thoughtlens.trace.labelers import label_sentences

            tags = label_sentences([s["text"] for s in sents], labeler)
        for s, t in zip(sents, tags):
            rows.append(
                {
                    "trace_id": str(problem_id),
                    "sentence_index": int(s["index"]),
                    "n_sentences": len(sents),
                    "text": s["text"],
                    "tags": validate_tags(t or [], where=f"run '{run_id}' problem '{problem_id}'"),
                }
            )
    df = pd.DataFrame(rows, columns=["trace_id", "sentence_index", "n_sentences", "text", "tags"])
    if not metrics.empty:
        metrics = metrics.rename(columns={"problem_id": "trace_id"}).astype({"trace_id": str})
        df = df.merge(metrics, on=["trace_id", "sentence_index"], how="left")
    return df


def _float(v) -> float:
    return math.nan if v is None else float(v)


# ---- the aggregation rules ------------------------------------------------------------------------


def convergence_index(accuracy: Sequence[float], rules: AggregationRules = AggregationRules()) -> int:
    """First sentence index from which the trace has converged (see AggregationRules); len(accuracy) if never."""
    acc = np.asarray(accuracy, dtype=float)
    k, n = rules.convergence_window, len(acc)
    last_start = n - k - 1 if rules.convergence_paper_bound else n - k + 1
    for i in range(max(0, last_start)):
        w = acc[i : i + k]
        if np.all(w > rules.convergence_high) or np.all(w < rules.convergence_low):
            return i
    return n


@dataclass(frozen=True)
class FilterCounts:
    """What the rules dropped: total sentences, kept after the convergence filter, and the tagged rows used."""

    n_total: int
    n_after_convergence: int
    n_untagged: int
    n_unknown: int
    n_used: int
    n_traces: int


def apply_rules(df: pd.DataFrame, rules: AggregationRules = AggregationRules()) -> tuple[pd.DataFrame, FilterCounts]:
    """One row per (sentence, counted category): adds `category` and `position` (i / (n - 1)); drops per the rules."""
    _require_columns(df, ["trace_id", "sentence_index", "n_sentences", "tags"])
    df = df.sort_values(["trace_id", "sentence_index"], kind="stable")
    n_total = len(df)
    if rules.drop_after_convergence:
        _require_columns(df, ["accuracy"], why="for the convergence filter (or set drop_after_convergence=False)")
        cut = {t: convergence_index(g["accuracy"].to_numpy(), rules) for t, g in df.groupby("trace_id", sort=False)}
        order = df.groupby("trace_id", sort=False).cumcount()
        df = df[order.to_numpy() < df["trace_id"].map(cut).to_numpy()]
    n_after = len(df)
    if df.empty:  # every sentence dropped (e.g. all accuracies 0 or 1): an empty table, not a pandas error
        out = df.assign(category=pd.Series(dtype=object), position=pd.Series(dtype=float))
        return out, FilterCounts(n_total, 0, 0, 0, 0, 0)
    untagged = df["tags"].map(lambda t: len(t) == 0)
    df = df[~untagged].copy()
    df["category"] = df["tags"].map(lambda t: [first_tag(t)] if rules.first_tag_only else list(dict.fromkeys(t)))
    df = df.explode("category")
    unknown = df["category"] == UNKNOWN
    if rules.skip_unknown:
        df = df[~unknown]
    df = df.copy()
    df["position"] = np.where(df["n_sentences"] > 1, df["sentence_index"] / (df["n_sentences"] - 1).clip(lower=1), 0.5)
    counts = FilterCounts(n_total, n_after, int(untagged.sum()), int(unknown.sum()), len(df), df["trace_id"].nunique())
    return df, counts


def _require_columns(df: pd.DataFrame, cols: Sequence[str], why: str = "") -> None:
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise ThoughtlensError(
            f"sentence table lacks column(s) {', '.join(missing)} {why}".strip()
            + "; build it with load_published or load_store"
        )


def _metric_values(df: pd.DataFrame, metric: str, rules: AggregationRules) -> pd.Series:
    _require_columns(df, [metric])
    v = df[metric].astype(float)
    return v.clip(lower=0.0) if rules.clip_negative else v


def _per_trace(df: pd.DataFrame, values: pd.Series, traces: Sequence[str]) -> list[np.ndarray]:
    """Values split by trace, aligned to `traces` (empty arrays where a trace has none); NaNs dropped."""
    ok = values.notna()
    grouped = {t: g.to_numpy() for t, g in values[ok].groupby(df.loc[ok.index[ok], "trace_id"].to_numpy())}
    return [grouped.get(t, np.zeros(0)) for t in traces]


def _ordered_categories(df: pd.DataFrame) -> list[str]:
    present = set(df["category"])
    return [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))


# ---- tables ---------------------------------------------------------------------------------------


def category_table(
    sentences: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    rules: AggregationRules = AggregationRules(),
    *,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
    debias_degree: int | None = None,
) -> tuple[pd.DataFrame, FilterCounts]:
    """Category x metric table: mean, SE (NaN with one trace), hierarchical-bootstrap CI, n_traces, n.

    With per_trace_mean=False the mean pools sentences and the CI resamples sentences only.
    debias_degree: analyse residuals of importance regressed on relative position (polynomial of that degree).
    """
    df, counts = apply_rules(sentences, rules)
    traces = sorted(df["trace_id"].unique())
    rows = []
    for metric in metrics:
        values = _metric_values(df, metric, rules)
        if debias_degree is not None:
            values = position_residuals(df["position"], values, degree=debias_degree)
        for cat in _ordered_categories(df):
            mask = df["category"] == cat
            per_trace = _per_trace(df[mask], values[mask], traces)
            if not rules.per_trace_mean:
                per_trace = [np.concatenate(per_trace)]
            est = stats.hierarchical_bootstrap(per_trace, n_boot=n_boot, confidence=confidence, seed=seed)
            n_tr = int(sum(1 for a in _per_trace(df[mask], values[mask], traces) if a.size))
            se = est.se if rules.per_trace_mean else _pooled_se(per_trace[0])
            rows.append(
                {
                    "category": cat,
                    "metric": metric + ("_debiased" if debias_degree is not None else ""),
                    "mean": est.estimate,
                    "se": se,
                    "ci_low": est.ci_low,
                    "ci_high": est.ci_high,
                    "n_traces": n_tr,
                    "n": est.n,
                }
            )
    return pd.DataFrame(rows), counts


def _pooled_se(v: np.ndarray) -> float:
    return float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan


def position_residuals(position: pd.Series, values: pd.Series, *, degree: int = 10) -> pd.Series:
    """values minus a polynomial fit on relative position (all sentences pooled), NaNs kept as NaN.

    The paper fits degree 10; numpy's Polynomial.fit rescales x to [-1, 1], which keeps that fit well conditioned.
    """
    ok = values.notna() & position.notna()
    if ok.sum() <= degree:
        raise ThoughtlensError(
            f"{int(ok.sum())} sentences cannot fit a degree-{degree} position curve; lower --debias-degree"
        )
    fit = np.polynomial.Polynomial.fit(position[ok].to_numpy(float), values[ok].to_numpy(float), degree)
    out = values.copy()
    out[ok] = values[ok] - fit(position[ok].to_numpy(float))
    return out


def category_differences(
    sentences: pd.DataFrame,
    metric: str = "counterfactual_importance_kl",
    rules: AggregationRules = AggregationRules(),
    *,
    reference: str = "active_computation",
    n_boot: int = 2000,
    n_perm: int = 9999,
    confidence: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Each category vs `reference`: difference of per-trace means with a hierarchical-bootstrap CI,
    a paired sign-flip permutation p-value over traces that have both, BH-adjusted p, and Hedges' g
    (on the per-trace means). Rows where a test cannot run (< 2 paired traces) carry NaN p-values."""
    df, _ = apply_rules(sentences, rules)
    values = _metric_values(df, metric, rules)
    traces = sorted(df["trace_id"].unique())
    ref_mask = df["category"] == reference
    if not ref_mask.any():
        raise ThoughtlensError(
            f"reference category {reference!r} has no sentences after the rules; pick another --reference"
        )
    ref = _per_trace(df[ref_mask], values[ref_mask], traces)
    rows = []
    for cat in _ordered_categories(df):
        if cat == reference:
            continue
        mask = df["category"] == cat
        other = _per_trace(df[mask], values[mask], traces)
        diff = stats.hierarchical_bootstrap_diff(other, ref, n_boot=n_boot, confidence=confidence, seed=seed)
        pairs = [(a.mean(), b.mean()) for a, b in zip(other, ref) if a.size and b.size]
        a, b = (np.array(x) for x in zip(*pairs)) if pairs else (np.zeros(0), np.zeros(0))
        p = stats.paired_permutation_test(a, b, n_perm=n_perm, seed=seed).p_value if len(pairs) >= 2 else math.nan
        rows.append(
            {
                "category": cat,
                "reference": reference,
                "metric": metric,
                "difference": diff.estimate,
                "ci_low": diff.ci_low,
                "ci_high": diff.ci_high,
                "p_value": p,
                "hedges_g": stats.hedges_g(a, b),
                "n_traces": len(pairs),
                "n": diff.n,
            }
        )
    out = pd.DataFrame(rows)
    if not out.empty:
        out["p_bh"] = stats.benjamini_hochberg(out["p_value"].to_numpy())[1]
    return out


# ---- transitions ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Transitions:
    """P(next category | category) over consecutive sentences of the same trace.

    categories: [C]; counts: [C, C] (row = from, col = to); probs: [C, C] rows sum to 1 (NaN rows with no data);
    ci_low / ci_high: [C, C] percentile CIs from resampling whole traces; n_traces: traces contributing.
    """

    categories: list[str]
    counts: np.ndarray
    probs: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray
    n_traces: int

    def to_artifact(self) -> dict:
        """JSON-able form for RunStore.put_artifact('transition_matrix', ...) (NaN -> None)."""
        return json_safe(
            {
                "categories": self.categories,
                "matrix": self.probs,
                "counts": self.counts.astype(int),
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "n_traces": self.n_traces,
            }
        )


def transition_matrix(
    sentences: pd.DataFrame,
    *,
    skip_unknown: bool = True,
    n_boot: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Transitions:
    """Transition probabilities between first tags of consecutive sentences (all sentences, no convergence cut).

    A pair involving an untagged sentence (or `unknown`, with skip_unknown) is not counted. CIs resample
    traces (not sentences: a trace's transitions form a chain and cannot be redrawn independently).
    """
    _require_columns(sentences, ["trace_id", "sentence_index", "tags"])
    df = sentences.sort_values(["trace_id", "sentence_index"], kind="stable")
    first = df["tags"].map(lambda t: first_tag(t) if len(t) else None)
    present = set(first.dropna()) - ({UNKNOWN} if skip_unknown else set())
    cats = [c for c in CATEGORIES if c in present] + sorted(present - set(CATEGORIES))
    index = {c: i for i, c in enumerate(cats)}
    per_trace = []
    for _, tags in first.groupby(df["trace_id"].to_numpy(), sort=True):
        m = np.zeros((len(cats), len(cats)))
        seq = tags.tolist()
        for a, b in zip(seq[:-1], seq[1:]):
            if a in index and b in index:
                m[index[a], index[b]] += 1
        per_trace.append(m)
    if not cats or not per_trace:
        raise ThoughtlensError("no tagged consecutive sentences: label the traces first (thoughtlens.trace.labelers)")
    stack = np.stack(per_trace)  # [n_traces, C, C]
    counts = stack.sum(axis=0)
    probs = _row_normalise(counts)
    rng = np.random.default_rng(seed)
    w = rng.multinomial(
        len(per_trace), np.full(len(per_trace), 1.0 / len(per_trace)), size=n_boot
    )  # [n_boot, n_traces]
    boot = _row_normalise(np.einsum("bt,tij->bij", w, stack))  # [n_boot, C, C]
    alpha = (1 - confidence) / 2
    with warnings.catch_warnings():  # a row never reached in any replicate is NaN, as it should be
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanquantile(boot, [alpha, 1 - alpha], axis=0)
    return Transitions(cats, counts, probs, lo, hi, int((stack.sum(axis=(1, 2)) > 0).sum()))


def _row_normalise(m: np.ndarray) -> np.ndarray:
    totals = m.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, m / np.where(totals > 0, totals, 1), np.nan)


# ---- the whole analysis -----------------------------------------------------------------------------


def table_artifact(table: pd.DataFrame) -> list[dict]:
    """JSON-able records for RunStore.put_artifact('category_table', ...) (NaN -> None)."""
    return json_safe(table.to_dict("records"))


@dataclass(frozen=True)
class CategoryResults:
    """Everything `thoughtlens anchors categories` prints and stores."""

    table: pd.DataFrame  # category x metric (and *_debiased metrics): mean, se, ci_low, ci_high, n_traces, n
    differences: pd.DataFrame  # each category vs the reference, first metric
    transitions: Transitions
    counts: FilterCounts
    rules: AggregationRules


def analyze(
    sentences: pd.DataFrame,
    metrics: Sequence[str] = DEFAULT_METRICS,
    rules: AggregationRules = AggregationRules(),
    *,
    reference: str = "active_computation",
    debias_degree: int | None = 10,
    n_boot: int = 2000,
    seed: int = 0,
) -> CategoryResults:
    """The category table (raw and, with debias_degree, position-debiased), differences vs `reference`
    for the first metric, and the transition matrix."""
    metrics = [m for m in metrics if m in sentences.columns and sentences[m].notna().any()]
    if not metrics:
        raise ThoughtlensError(
            "no importance metric column has values; compute metrics first (`thoughtlens anchors run`) or pick --metric"
        )
    table, counts = category_table(sentences, metrics, rules, n_boot=n_boot, seed=seed)
    if counts.n_used == 0:
        raise ThoughtlensError(
            "no labelled sentences left after the rules; label the traces (--labeler) or relax the rules"
        )
    if debias_degree:
        debiased, _ = category_table(sentences, metrics, rules, n_boot=n_boot, seed=seed, debias_degree=debias_degree)
        table = pd.concat([table, debiased], ignore_index=True)
    has_ref = reference in set(apply_rules(sentences, rules)[0]["category"])
    diffs = (
        category_differences(sentences, metrics[0], rules, reference=reference, n_boot=n_boot, seed=seed)
        if has_ref
        else pd.DataFrame()
    )
    return CategoryResults(table, diffs, transition_matrix(sentences, n_boot=n_boot, seed=seed), counts, rules)


def save_results(store, run_id: str, results: CategoryResults) -> list[str]:
    """Write the results as run-level artifacts; returns the artifact names."""
    values = {
        "category_table": table_artifact(results.table),
        "category_differences": table_artifact(results.differences),
        "transition_matrix": results.transitions.to_artifact(),
        "category_filter_counts": asdict(results.counts),
        "category_rules": asdict(results.rules),
    }
    for name, value in values.items():
        store.put_artifact(run_id, name, value)
    return list(values)
