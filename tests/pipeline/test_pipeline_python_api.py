"""The README's Python example path: `thoughtlens.run_anchors(text, answer=..., model=<path>, rollouts=...)`
loads the model, builds the prompt with its chat template, samples with the hf backend and stores one metrics
row per sentence of the base trace, with no sampler or prompt built by hand."""

from __future__ import annotations

import thoughtlens
from thoughtlens.trace.prompts import build_prompt


def test_run_anchors_from_a_problem_text(tiny_lm_dir, tmp_path):
    result = thoughtlens.run_anchors(
        "What is 2 + 3?",
        answer="5",
        model=tiny_lm_dir,
        rollouts=2,
        max_new_tokens=6,
        base_max_new_tokens=24,
        base_temperature=1.0,
        forced=False,
        label_categories=False,
        counterfactual_matrix=False,
        categories=False,
        store=tmp_path / "p.sqlite",
    )
    stored = result.store.trace(result.run_id, "problem-0")
    from transformers import AutoTokenizer

    # The prompt is the tokenizer's own chat template around the default instruction (independent rebuild).
    assert stored["prompt"] == build_prompt(AutoTokenizer.from_pretrained(tiny_lm_dir), "What is 2 + 3?")
    assert "What is 2 + 3?" in stored["prompt"]
    metrics = result.metrics
    assert list(metrics["sentence_index"]) == list(range(len(stored["sentences"])))
    rollouts = result.store.rollouts(result.run_id)
    assert len(rollouts) == 2 * (len(stored["sentences"]) + 1)  # 2 per prefix position, resampled only
    assert result.save_page(tmp_path / "p.html").is_file()
