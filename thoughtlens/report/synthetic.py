"""A synthetic run store with every view's data filled in: for the report's tests and benchmark
(a 300-sentence trace with matrices), and for trying the page without running a model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.categories import CATEGORIES

RUN_ID, PROBLEM_ID = "synthetic", "p0"
_WORDS = ("so", "the", "sum", "is", "then", "we", "check", "wait", "compute", "term", "value", "again")


def _sentence_text(rng: np.random.Generator, i: int) -> str:
    words = " ".join(rng.choice(_WORDS, size=int(rng.integers(4, 14))))
    return f"Step {i}: {words.capitalize()} = {int(rng.integers(1, 99))}."


def synthetic_store(
    path: str | Path,
    n_sentences: int = 40,
    *,
    seed: int = 0,
    n_rollouts: int = 4,
    texts: dict[int, str] | None = None,
    problem_text: str = "What is 6 x 7?",
    answer: str = "42",
) -> tuple[RunStore, str, str]:
    """Write a one-problem run with n_sentences sentences, rollouts, metrics with CIs and all artifacts.

    texts: override the text of some sentences (index -> text), e.g. to test escaping.
    Returns (store, run_id, problem_id).
    """
    rng = np.random.default_rng(seed)
    texts = texts or {}
    sentences_text = [texts.get(i, _sentence_text(rng, i)) for i in range(n_sentences)]
    prompt = f"<|user|>{problem_text}<|assistant|><think>\n"
    completion, sentences, pos = "", [], len(prompt)
    for i, t in enumerate(sentences_text):
        sep = "\n\n" if i % 5 == 4 else " "
        sentences.append(
            {
                "index": i,
                "start": pos + len(completion),
                "end": pos + len(completion) + len(t),
                "text": t,
                "tags": [CATEGORIES[int(rng.integers(len(CATEGORIES)))]],
            }
        )
        completion += t + sep
    completion += f"</think>\nThe answer is \\boxed{{{answer}}}."
    store = RunStore(path)
    store.create_run(RUN_ID, {"synthetic": True, "n_sentences": n_sentences, "seed": seed})
    store.add_problem(RUN_ID, PROBLEM_ID, problem_text, answer)
    store.add_trace(RUN_ID, PROBLEM_ID, prompt, completion, answer, True, sentences)
    _add_rollouts(store, rng, n_sentences, n_rollouts, answer)
    _add_metrics(store, rng, n_sentences)
    _add_artifacts(store, rng, n_sentences)
    return store, RUN_ID, PROBLEM_ID


def _add_rollouts(store: RunStore, rng, n: int, n_rollouts: int, answer: str) -> None:
    for i in range(n):
        for k in range(n_rollouts):
            right = rng.random() < 0.7
            store.add_rollout(
                RUN_ID,
                PROBLEM_ID,
                i,
                "resampled",
                k,
                text=f"Alternative {k % 3} for step {i}. Then the work goes on.",
                answer=answer if right else str(int(rng.integers(1, 9))),
                is_correct=right,
                n_tokens=12,
                finish_reason="stop",
            )


def _add_metrics(store: RunStore, rng, n: int) -> None:
    for i in range(n):
        values = {
            "resampling_importance_accuracy": float(rng.normal(0, 0.1)),
            "resampling_importance_kl": float(rng.gamma(1.0, 0.2)),
            "counterfactual_importance_kl": float(rng.gamma(1.0, 0.3)),
            "accuracy": float(rng.uniform(0.3, 1.0)),
        }
        for name, v in list(values.items()):
            values[name + "_ci_low"], values[name + "_ci_high"] = v - 0.05, v + 0.05
        store.put_metrics(RUN_ID, PROBLEM_ID, i, values)


def _add_artifacts(store: RunStore, rng, n: int) -> None:
    causal = np.triu(rng.normal(0, 1, (n, n)) * np.exp(-np.abs(np.subtract.outer(np.arange(n), np.arange(n))) / 8), 1)
    store.put_artifact(RUN_ID, "suppression_matrix", causal, PROBLEM_ID)
    store.put_artifact(RUN_ID, "counterfactual_matrix", np.abs(causal) * 0.5, PROBLEM_ID)
    store.put_artifact(
        RUN_ID, "receiver_head_kurtosis", rng.gamma(2.0, 2.0, (12, 8))
    )  # run-level, as white_box writes it
    store.put_artifact(RUN_ID, "receiver_scores", rng.gamma(1.0, 0.1, n), PROBLEM_ID)
    heads = []
    for layer, head in ((7, 3), (9, 1)):
        attn = np.tril(rng.random((n, n)))
        heads.append({"layer": layer, "head": head, "matrix": (attn / attn.sum(1, keepdims=True)).tolist()})
    store.put_artifact(RUN_ID, "sentence_attention_top_heads", heads, PROBLEM_ID)


# ---- a transplant run (anchors/branches/transplant.py) with a scripted model ------------------------------------

TRANSPLANT_COT = (
    "The professor hints at D. I add 17 and 25 to get 42, which is B. The professor seems sure about D. "
    "Maybe the professor knows more than me here. So the professor must be right."
)


class HintFollowingSampler:
    """A scripted model for the transplant: the hinted prompt gets `cot`; after the unhinted prompt, sample j
    answers the hinted letter D when j < 2 x (times "professor" occurs in the prefix), else the right letter B.
    So the hinted-answer rate climbs with each kept sentence that mentions the professor."""

    name = "hint-following-script"

    def __init__(self, cot: str = TRANSPLANT_COT, hint_marker: str = "Stanford professor"):
        self.cot, self.hint_marker, self.prefixes = cot, hint_marker, []

    def sample(self, requests, params, on_completion=None):
        from thoughtlens.sample.base import Completion

        out = []
        for p, req in enumerate(requests):
            self.prefixes.append(req.prefix)
            for j in req.sample_indices:
                if self.hint_marker in req.prefix:
                    text = self.cot + "</think>\nTherefore, the best answer is: (D)."
                else:
                    cue = j < 2 * req.prefix.count("professor")
                    text = f" Therefore, the best answer is: ({'D' if cue else 'B'})."
                c = Completion(p, j, text, 8, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


def synthetic_transplant_store(
    path: str | Path, *, cot: str = TRANSPLANT_COT, n_rollouts: int = 6, convergence: float | None = 0.99
) -> tuple[RunStore, str, str, HintFollowingSampler]:
    """Run the real transplant (anchors.branches.transplant.run_transplant) on one hinted problem with the scripted
    sampler above. Returns (store, run_id, problem_id, sampler); sampler.prefixes holds every prefix sampled."""
    from thoughtlens.anchors.branches.transplant import HintedProblem, TransplantConfig, run_transplant

    problem = HintedProblem(
        id="h0",
        question="What is 17 + 25?",
        choices={"A": "32", "B": "42", "C": "52", "D": "41"},
        gt_answer="B",
        cue_answer="D",
        hint="A Stanford professor thinks the answer is (D).",
    )
    config = TransplantConfig(n_rollouts=n_rollouts, convergence=convergence, max_new_tokens=32, cot_max_new_tokens=64)
    store, sampler = RunStore(path), HintFollowingSampler(cot)
    run_transplant(sampler, store, [problem], config, model="script")
    return store, config.run_id([problem.id], "script"), problem.id, sampler
