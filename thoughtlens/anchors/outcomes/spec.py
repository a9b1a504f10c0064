"""Any outcome: what the anchors job measures the importance *for*, one value per rollout.

Thought Branches (Macar et al. 2025; reference code ../shared/reference/thought-branches/) measures the
same resampling / counterfactual / forced importance as Thought Anchors, but of a yes/no property of each
rollout instead of "is the boxed answer right": `contains_whistleblowing` / `contains_blackmail`, graded
per rollout, None when the grader could not tell (whistleblowling/analyze_rollouts.py:
calculate_resampling_importance_whistleblowing_rate, calculate_counterfactual_importance_kl, ...).

An outcome maps a rollout's generated text to True / False / None (unknown). Kinds (`spec` strings, the
AnchorsConfig.outcome field; the run id includes it unless it is the default):

    "correct"                   maths correctness of the stated answer (the default: today's metrics, bit-identical)
    "regex:PATTERN"             True when re.search(PATTERN, text) matches ("regex:(?i)blackmail")
    "category:NAME[@LABELLER]"  True when some sentence of the rollout is labelled NAME (labeller "rules" by default)
    "python:MODULE:FUNCTION"    FUNCTION(text) -> bool | None, imported by path
    "judge:NAME"                an LLM judge registered under NAME (anchors.outcomes.judge.JudgeOutcome)
    NAME                        any outcome registered with register_outcome(NAME, fn)

How a value becomes the paper's metrics: a rollout with value v is the paper's solution with
`contains_X = v`; thoughtlens feeds it to the Thought Anchors definitions as answer "yes"/"no" (None when
unknown) and is_correct = v. So, exactly as analyze_rollouts.py (Thought Branches) computes them:
    rate (the "accuracy" columns) = #True / #known;    KL over the yes/no distribution, 1e-9 smoothing
    (calculate_kl_divergence, use_prob_true=False, their CLI default);  log-odds in anchors.importance.logodds.
An outcome function that raises is recorded per rollout (value unknown, the error kept), the run goes on,
and the errors are counted per sentence (n_outcome_errors) and in the `outcome_summary` artifact.
"""

from __future__ import annotations

import hashlib
import importlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from thoughtlens.errors import ConfigError

DEFAULT_OUTCOME = "correct"
KINDS = ("correct", "regex", "category", "python", "judge", "registered")

OutcomeFn = Callable[[str], "bool | None"]


@dataclass
class OutcomeSpec:
    """A resolved outcome. fn(text) -> True / False / None (unknown); may raise (recorded, not fatal).

    spec: the string stored in the run config; label: what the page calls its rate ("blackmail rate");
    definition: what is stored with the run so that it can be re-read (the judge's prompt, the pattern)."""

    spec: str
    kind: str
    label: str
    fn: OutcomeFn | None = None
    definition: dict = field(default_factory=dict)

    @property
    def is_default(self) -> bool:
        return self.kind == "correct"

    def __call__(self, text: str) -> bool | None:
        if self.fn is None:
            raise ConfigError("the 'correct' outcome is computed from answers, not text: use AnchorsRun")
        value = self.fn(text)
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"outcome {self.spec!r} returned {type(value).__name__}, expected True, False or None")
        return value


_REGISTRY: dict[str, OutcomeSpec] = {}


def register_outcome(name: str, fn: OutcomeFn | OutcomeSpec, *, label: str | None = None) -> OutcomeSpec:
    """Make `name` usable as AnchorsConfig(outcome=name) (and `judge:name` for a JudgeOutcome).
    fn: a callable text -> bool | None, or a ready OutcomeSpec (e.g. JudgeOutcome(...).spec_object())."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", name):
        raise ConfigError(f"outcome name {name!r} must be an identifier such as 'blackmail'")
    if name in ("correct",) or ":" in name:
        raise ConfigError(f"outcome name {name!r} is reserved: pick another name")
    if isinstance(fn, OutcomeSpec):
        spec = fn
    else:
        if not callable(fn):
            raise ConfigError(f"outcome {name!r} needs a callable text -> bool | None, got {type(fn).__name__}")
        spec = OutcomeSpec(
            name,
            "registered",
            label or f"{name} rate",
            fn,
            {"callable": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', '?')}"},
        )
    _REGISTRY[spec.spec if spec.kind == "judge" else name] = spec
    return spec


def unregister_outcome(name: str) -> None:
    _REGISTRY.pop(name, None)


def outcome_label(config: dict | None) -> str:
    """What the page and `anchors show` call the rate of a stored run: "accuracy" for the default."""
    spec = (config or {}).get("outcome") or DEFAULT_OUTCOME
    if spec == DEFAULT_OUTCOME:
        return "accuracy"
    kind, _, rest = spec.partition(":")
    if kind == "regex":
        return f"rate of /{rest}/"
    if kind == "category":
        return f"{rest.split('@')[0]} rate"
    if kind in ("judge", "python"):
        return f"{rest.split('@')[0].rsplit(':', 1)[-1]} rate"
    return f"{spec} rate"


def check_outcome_spec(spec: str) -> None:
    """One-line ConfigError for a spec that cannot be resolved (called when the config is built)."""
    resolve_outcome(spec, import_python=False)


def resolve_outcome(spec: str | OutcomeSpec | None, *, import_python: bool = True) -> OutcomeSpec:
    """The OutcomeSpec for a spec string (see the module docstring)."""
    if isinstance(spec, OutcomeSpec):
        return spec
    if spec is None or spec == DEFAULT_OUTCOME:
        return OutcomeSpec(DEFAULT_OUTCOME, "correct", "accuracy")
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"outcome {spec!r} is empty: use 'correct' (default), 'regex:PATTERN', "
            "'category:NAME', 'python:MODULE:FUNCTION' or a registered name"
        )
    kind, sep, rest = spec.partition(":")
    if sep and kind == "regex":
        try:
            pattern = re.compile(rest)
        except re.error as e:
            raise ConfigError(f"outcome {spec!r}: bad regular expression ({e}); e.g. 'regex:(?i)blackmail'") from None
        if not rest:
            raise ConfigError("outcome 'regex:' has no pattern: pass e.g. 'regex:(?i)blackmail'")
        return OutcomeSpec(
            spec,
            "regex",
            outcome_label({"outcome": spec}),
            lambda text: pattern.search(text) is not None,
            {"pattern": rest},
        )
    if sep and kind == "category":
        return _category_outcome(spec, rest)
    if sep and kind == "python":
        module, _, attr = rest.rpartition(":")
        if not module or not attr:
            raise ConfigError(f"outcome {spec!r} must be 'python:MODULE:FUNCTION', e.g. 'python:mypkg.grade:blackmail'")
        if not import_python:
            return OutcomeSpec(spec, "python", outcome_label({"outcome": spec}))
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"outcome {spec!r}: cannot import {module}:{attr} ({e}); check the module path") from None
        return OutcomeSpec(spec, "python", outcome_label({"outcome": spec}), fn, {"callable": f"{module}:{attr}"})
    if sep and kind == "judge":
        if spec in _REGISTRY:
            return _REGISTRY[spec]
        if not import_python:  # the judge object (with its client) may be registered after the config is built
            return OutcomeSpec(spec, "judge", outcome_label({"outcome": spec}))
        raise ConfigError(
            f"outcome {spec!r}: no judge registered under that name; build a JudgeOutcome "
            "(thoughtlens.anchors.outcomes.judge) and pass it as AnchorsRun(outcome=...)"
        )
    if not sep and spec in _REGISTRY:
        return _REGISTRY[spec]
    raise ConfigError(
        f"unknown outcome {spec!r}: use 'correct' (default), 'regex:PATTERN', 'category:NAME', "
        f"'python:MODULE:FUNCTION', 'judge:NAME' or one of the registered names "
        f"({', '.join(sorted(_REGISTRY)) or 'none registered'})"
    )


def _category_outcome(spec: str, rest: str) -> OutcomeSpec:
    from thoughtlens.trace.categories import CATEGORIES
    from thoughtlens.trace.labelers import LABELERS, get_labeler
    from thoughtlens.trace.split import split_sentences

    name, _, labeler_name = rest.partition("@")
    labeler_name = labeler_name or "rules"
    if name not in CATEGORIES:
        raise ConfigError(f"outcome {spec!r}: unknown category {name!r}; use one of {', '.join(CATEGORIES)}")
    if labeler_name not in LABELERS or labeler_name in ("llm", "encoder"):  # these two need a client / a file
        raise ConfigError(
            f"outcome {spec!r}: labeller {labeler_name!r} cannot grade rollouts offline; "
            "use '@rules' (default) or '@learned'"
        )
    labeler = None

    def has_category(text: str) -> bool:
        nonlocal labeler
        labeler = labeler or get_labeler(labeler_name)
        sentences = [text[a:b] for a, b in split_sentences(text)]
        return any(name in tags for tags in labeler.label_sentences(sentences)) if sentences else False

    return OutcomeSpec(spec, "category", f"{name} rate", has_category, {"category": name, "labeler": labeler_name})


def text_key(text: str) -> str:
    """A short content hash: a cached outcome value is reused only for the very same rollout text."""
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass
class Graded:
    """The outcome of one stored rollout. value: True / False / None (unknown); error: why unknown."""

    value: bool | None
    error: str | None = None


def grade_texts(
    outcome: OutcomeSpec,
    texts: Sequence[str],
    cache: dict[str, dict] | None = None,
    on_graded: Callable[[int], None] | None = None,
) -> list[Graded]:
    """outcome(text) for every text, never raising: an exception is recorded as the rollout's error.
    cache: text_key -> {"value", "error"}, read and filled (the job stores it, so a resumed run does not
    ask a judge twice). on_graded(n_new) is called after each new grading (checkpointing, progress)."""
    cache = {} if cache is None else cache
    out = []
    for text in texts:
        key = text_key(text)
        if key not in cache:
            try:
                cache[key] = {"value": outcome(text), "error": None}
            except Exception as e:  # noqa: BLE001 - the user's function: record it, keep going
                cache[key] = {"value": None, "error": f"{type(e).__name__}: {e}"[:300]}
            if on_graded is not None:
                on_graded(1)
        out.append(Graded(cache[key]["value"], cache[key]["error"]))
    return out
