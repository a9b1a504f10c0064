"""Every metric and artifact a run store can hold, declared once.

Writers (`anchors/importance/black_box.py`, `anchors/attention/white_box.py`, `anchors/importance/by_category.py`,
`pipeline/anchors.py`), the page (`report/from_store.py`, `report/page_data.py`), the synthetic fixture
(`report/synthetic.py`) and `thoughtlens anchors show` agree on names, scopes and shapes by reading these
declarations, never by repeating a string. Add a metric or an artifact here first;
`tests/store/test_store_artifacts.py` checks that every name a writer uses is declared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Scope = Literal["problem", "run"]


@dataclass(frozen=True)
class Metric:
    """A per-sentence metric (store table `metrics`). `short` is the column header of `anchors show`
    (None: not shown there); `label`/`description` are what the page says."""

    key: str
    label: str
    description: str
    short: str | None = None


@dataclass(frozen=True)
class Artifact:
    """A stored JSON / array value. scope "problem": one per (run, problem); "run": one per run.
    `view`: the page view it fills (None: not drawn); `command`: what produces it."""

    name: str
    scope: Scope
    shape: str
    command: str
    view: str | None = None


# The paper's metric names (chunks_labeled.json); the page's switcher and `anchors show` use this order.
METRICS: tuple[Metric, ...] = (
    Metric(
        "resampling_importance_accuracy",
        "Resampling importance (accuracy)",
        "Change in accuracy when the sentence is kept vs resampled.",
        "resamp Δacc",
    ),
    Metric(
        "resampling_importance_kl",
        "Resampling importance (KL)",
        "KL divergence between answer distributions, sentence resampled vs kept.",
        "resamp KL",
    ),
    Metric(
        "counterfactual_importance_accuracy",
        "Counterfactual importance (accuracy)",
        "As resampling, counting only resamples that differ in meaning.",
        "cf Δacc",
    ),
    Metric(
        "counterfactual_importance_kl",
        "Counterfactual importance (KL)",
        "As resampling (KL), counting only resamples that differ in meaning.",
        "cf KL",
    ),
    Metric(
        "forced_importance_accuracy",
        "Forced-answer importance (accuracy)",
        "Change in accuracy when the answer is forced right after the sentence.",
        "forced Δacc",
    ),
    Metric(
        "forced_importance_kl",
        "Forced-answer importance (KL)",
        "KL between forced-answer distributions after vs before the sentence.",
    ),
    Metric(
        "accuracy", "Accuracy of rollouts", "Fraction of rollouts resampled from this sentence that are correct.", "acc"
    ),
    Metric(
        "different_trajectories_fraction",
        "Different-trajectory fraction",
        "Fraction of resamples whose replacement sentence differs in meaning.",
        "diff traj",
    ),
    Metric(
        "overdeterminedness",
        "Overdeterminedness",
        "Fraction of resamples that regenerate an equivalent sentence.",
        "overdet",
    ),
    Metric("receiver_score", "Receiver-head score", "Attention the top receiver heads pay to the sentence."),
)
METRIC_BY_KEY = {m.key: m for m in METRICS}
# The columns of `thoughtlens anchors show`, accuracy first.
SHOW_COLUMNS: tuple[tuple[str, str], ...] = (("accuracy", "acc"),) + tuple(
    (m.key, m.short) for m in METRICS if m.short and m.key != "accuracy"
)

_RUN = "thoughtlens anchors run"
_ATTN = "thoughtlens anchors attention"
_CAT = "thoughtlens anchors categories"
_SAE = "thoughtlens sae store-features SAE_DIR"

ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("regeneration_curve", "problem", "[{k, accuracy, n}]", _RUN),
    # Adaptive budgets (anchors/importance/budget.py): per round, the cumulative rollouts wanted at each prefix
    # position.
    Artifact("budget_rounds", "problem", "[rounds][S + 1] int", _RUN),
    Artifact("counterfactual_matrix", "problem", "[S, S] row = cause, column = affected", _RUN, "counterfactual"),
    Artifact("receiver_scores", "problem", "[S]", _ATTN, "receiver_scores"),
    Artifact("vertical_scores", "problem", "[layers, heads, S]", _ATTN),
    Artifact(
        "sentence_attention_top_heads", "problem", "[{layer, head, kurtosis, matrix [S][S]}]", _ATTN, "head_attention"
    ),
    Artifact("suppression_matrix", "problem", "[S, S] row = suppressed, column = affected", _ATTN, "suppression"),
    Artifact("suppression_meta", "problem", "{temperature, heads, ...}", _ATTN),
    Artifact("receiver_head_kurtosis", "run", "[layers, heads]", _ATTN, "receiver_head_kurtosis"),
    Artifact("receiver_heads", "run", "[{layer, head, kurtosis}]", _ATTN),
    Artifact("receiver_split_half_r", "run", "float | null", _ATTN),
    Artifact("receiver_meta", "run", "{parameters}", _ATTN),
    Artifact(
        "category_table", "run", "[{category, metric, mean, se, ci_low, ci_high, n_traces, n}]", _CAT, "category_table"
    ),
    Artifact("category_differences", "run", "[{category, reference, metric, difference, ...}]", _CAT),
    Artifact("transition_matrix", "run", "{categories, matrix, counts, ci_low, ci_high}", _CAT, "transition_matrix"),
    Artifact("category_filter_counts", "run", "{n_total, n_after_convergence, ...}", _CAT),
    Artifact("category_rules", "run", "{AggregationRules fields}", _CAT),
    Artifact("pipeline_notes", "run", "{view: why it was skipped}", _RUN),
    Artifact(
        "hinted_cot",
        "problem",
        "str (the hinted chain of thought that is transplanted)",
        "thoughtlens branches transplant",
    ),
    Artifact(
        "transplant_curve",
        "problem",
        "[{k, rate, ci_low, ci_high, n}] hinted-answer rate per cut point",
        "thoughtlens branches transplant",
        "transplant_curve",
    ),
    Artifact("outcome_definition", "run", "{spec, kind, label, ...} what the run's importance measures", _RUN),
    Artifact("outcome_cache", "problem", "{rollout key: grade} (a judge is not asked twice)", _RUN),
    Artifact("outcome_summary", "problem", "{n graded, n errors, ...}", _RUN),
    # The report's SAE feature panel (sae/run_features.py): per sentence its top latents, per latent where it fires.
    Artifact(
        "sae_sentence_features",
        "problem",
        "{sae: meta, sentences: [S][[feature, activation], ...]}",
        _SAE,
        "sae_features",
    ),
    Artifact(
        "sae_feature_candidates",
        "problem",
        "{sae, feature: [..], sentence: [..], activation: [..]}: per latent, its top sentences here",
        _SAE,
    ),
    Artifact(
        "sae_feature_table",
        "run",
        "{sae: meta, problems, features: {id: {label, up, down, top_sentences}}}",
        _SAE,
        "sae_features",
    ),
    # resilience_<i>: one per measured sentence i (a family of names, written by anchors/branches/resilience.py).
    Artifact(
        "resilience_<i>", "problem", "{resilience, persistence, cf_plus_plus, ...}", "thoughtlens branches resilience"
    ),
)
ARTIFACT_BY_NAME = {a.name: a for a in ARTIFACTS}


def artifact(name: str) -> Artifact:
    """The declaration of `name` (KeyError names the declared ones: add new artifacts to ARTIFACTS)."""
    try:
        return ARTIFACT_BY_NAME[name]
    except KeyError:
        raise KeyError(
            f"undeclared artifact {name!r}: declare it in thoughtlens/store/artifacts.py "
            f"(declared: {', '.join(ARTIFACT_BY_NAME)})"
        ) from None


def not_computed_note(view: str) -> str | None:
    """The page's note for an empty view: which command fills it."""
    for a in ARTIFACTS:
        if a.view == view:
            what = a.name.replace("_", " ")
            return f"not computed: run `{a.command} STORE` ({what})"
    return None
