"""One home for the thought-anchors run's configuration: the problem, every knob of the job, the record stored
with a run (and hashed into its id), and the range check of every field.

`AnchorsConfig` inherits the sampling settings every job shares (`thoughtlens.sample.base.Sampling`:
temperature, top_p, max_new_tokens, seed, checked there) and adds the job's own, checked by `validate_config`
when the config is built, so `AnchorsConfig(n_rollouts=0)` is a one-line ConfigError before any model loads.
What only the command line has (problem files, --limit, --dtype, the store path) is checked in
`anchors.run_options`.

Ranges (and why):
  n_rollouts >= 1                     (0 rollouts leaves every importance metric undefined)
  base_temperature >= 0               (0 = greedy; the sampled rollouts use `temperature`, checked by Sampling)
  max_new_tokens, base_max_new_tokens, forced_max_new_tokens >= 1
  -1 <= similarity_threshold <= 1     (a cosine similarity)
  kl_alpha > 0                        (KL smoothing; 0 gives infinite KL for unseen answers)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from thoughtlens.anchors.importance.definitions import CONVENTIONS, DEFAULT_CONVENTIONS, default_kl_alpha
from thoughtlens.anchors.outcomes.spec import DEFAULT_OUTCOME, check_outcome_spec
from thoughtlens.checks import check_bool, check_choice, check_float, check_int
from thoughtlens.errors import ConfigError, TraceError
from thoughtlens.sample.base import Sampling
from thoughtlens.trace.split import SPLIT_STYLES

ANSWER_STYLES = ("auto", "boxed", "gsm8k", "answer_is", "last_number")


@dataclass(frozen=True)
class Problem:
    """One problem. `prompt` is the exact model input (chat template applied); `text` is the problem itself."""

    id: str
    text: str
    prompt: str
    gt_answer: str | None = None
    base_completion: str | None = None  # use this trace instead of generating one

    def __post_init__(self) -> None:
        # Refused here, where a Problem is built: an empty question lets the model invent one of its own.
        if not isinstance(self.id, str) or not self.id:
            raise TraceError(f"problem id must be a non-empty string, got {self.id!r}: pass a name such as 'problem-0'")
        if not isinstance(self.prompt, str) or not self.prompt.strip():
            raise TraceError(
                f"problem {self.id} has an empty prompt: pass --problem TEXT (or a base_solution.json "
                "with a prompt) so rollouts have a question to continue from"
            )
        if not isinstance(self.text, str) or not self.text.strip():
            raise TraceError(
                f"problem {self.id} has an empty problem text: pass the question itself, "
                'e.g. --problem "What is 2 + 3?"'
            )


@dataclass(frozen=True)
class AnchorsConfig(Sampling):
    """Every knob of the job. Stored with the run: resuming with different values is refused.

    conventions: "paper" (the paper's metric definitions, exactly; the default) or "thoughtlens" (the
    pre-1.0 definitions); see thoughtlens.anchors.importance.definitions. kl_alpha: KL smoothing; None = the
    conventions' value (paper 1e-9, thoughtlens 0.5); the resolved value is what the run stores.
    split_style: sentence splitter for the base trace and the rollouts' sentences ("thoughtlens" or
    "paper", the published chunking). counterfactual_matrix: also compute the sentence-to-sentence
    graph (step_attribution.py) after the rollouts.
    max_new_tokens: rollout budget. Reasoning models need thousands of tokens to close their thinking
    and answer (the paper allowed 16384); a rollout that hits the budget is stored without an answer.
    """

    max_new_tokens: int = 4096  # Sampling's field, with this job's default (temperature 0.6, top_p 0.95, seed 0)
    n_rollouts: int = 10
    base_max_new_tokens: int = 8192
    base_temperature: float = 0.0  # greedy base trace by default: reproducible
    forced: bool = True
    forced_max_new_tokens: int = 32  # enough for \sqrt{\frac{1}{2}}; the read stops when braces balance
    similarity_threshold: float = 0.8
    kl_alpha: float | None = None
    answer_style: str = "auto"
    think_tags: tuple[str, str] = ("<think>", "</think>")
    model: str = ""  # the loaded model's name, or the served model id (/v1/models) for remote backends
    backend: str = "hf"
    base_url: str = ""  # server(s) without credentials (thoughtlens.sample.provenance.redact_url)
    tokenizer: str = ""  # thoughtlens.model.load.tokenizer_identity of the prompt tokenizer
    label_categories: bool = True  # tag sentences with the default (learned) category labeller
    conventions: str = DEFAULT_CONVENTIONS
    split_style: str = "thoughtlens"
    counterfactual_matrix: bool = True
    # What importance is measured for (anchors.outcomes.spec): "correct" (maths correctness, the default),
    # "regex:P", "category:NAME", "python:MOD:FN", "judge:NAME" or a registered name. Left out of the
    # run id and stored config when default, so runs from before the field keep their ids.
    outcome: str = DEFAULT_OUTCOME

    def __post_init__(self) -> None:
        super().__post_init__()  # temperature, top_p, max_new_tokens, seed
        if self.conventions not in CONVENTIONS:
            raise ConfigError(
                f"unknown conventions {self.conventions!r}; use 'paper' (the paper's "
                "definitions, the default) or 'thoughtlens' (the pre-1.0 definitions)"
            )
        if self.split_style not in SPLIT_STYLES:
            raise ConfigError(f"unknown split style {self.split_style!r}; use 'thoughtlens' (default) or 'paper'")
        if self.kl_alpha is None:  # frozen: resolved here so that the stored config says which alpha was used
            object.__setattr__(self, "kl_alpha", default_kl_alpha(self.conventions))
        validate_config(self)  # one-line ConfigError on a bad value, before any model is loaded
        check_outcome_spec(self.outcome)

    def run_id(self) -> str:
        """A stable id from the config: the same command resumes the same run."""
        digest = hashlib.sha1(json.dumps(config_record(self), sort_keys=True).encode()).hexdigest()[:10]
        return f"anchors-{digest}"


def config_record(config: AnchorsConfig) -> dict:
    """The config as stored and hashed into the run id: fields added later are left out at their default
    (today: outcome="correct"), so a run keeps the id and stored config it had before they existed."""
    d = asdict(config)
    if d.get("outcome") == DEFAULT_OUTCOME:
        del d["outcome"]
    return d


def validate_config(cfg) -> None:
    """Raise ConfigError on the first out-of-range field of an AnchorsConfig (see module docstring); the
    shared sampling fields are checked by `Sampling` itself."""
    check_int("--rollouts (n_rollouts)", cfg.n_rollouts, min=1, example=10)
    check_float("base_temperature", cfg.base_temperature, min=0, example=0.0)
    check_int("base_max_new_tokens", cfg.base_max_new_tokens, min=1, example=512)
    check_int("forced_max_new_tokens", cfg.forced_max_new_tokens, min=1, example=16)
    check_float("--threshold (similarity_threshold)", cfg.similarity_threshold, min=-1, max=1, example=0.8)
    check_float("kl_alpha", cfg.kl_alpha, min=0, min_open=True, example=0.5)
    check_bool("--forced/--no-forced (forced)", cfg.forced)
    check_bool("label_categories", cfg.label_categories)
    check_choice("answer style", cfg.answer_style, ANSWER_STYLES)
    tags = cfg.think_tags
    if not isinstance(tags, (tuple, list)) or len(tags) != 2 or not all(isinstance(t, str) and t.strip() for t in tags):
        raise ConfigError(
            f"think_tags must be two non-empty strings (open, close), got {tags!r}: pass e.g. ('<think>', '</think>')"
        )
    if not isinstance(cfg.model, str):
        raise ConfigError(
            f"model must be a model name (a string), got {type(cfg.model).__name__}: pass e.g. the model's path"
        )
    check_choice("backend", cfg.backend, _backends())


def _backends() -> list[str]:
    """Backend names of the sampler registry (a registered custom backend is valid too)."""
    from thoughtlens.sample.registry import backend_names

    return sorted(backend_names())
