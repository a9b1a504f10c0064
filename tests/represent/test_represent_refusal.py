"""Reading refusal directions at the post-instruction template tokens (Arditi et al.'s eoi positions):
activations at the last n tokens of left-padded prompts equal plain HF hidden states of each prompt alone."""

from __future__ import annotations

import numerics
import pytest
import torch

from thoughtlens.errors import ConfigError
from thoughtlens.represent.refusal import (
    chat_prompts,
    last_token_activations,
    post_instruction_length,
    prompt_end_activations,
)


def test_post_instruction_length_is_the_template_suffix_every_prompt_shares(tiny_lm):
    n = post_instruction_length(tiny_lm)
    rows = [tiny_lm.to_tokens(p)[0].tolist() for p in chat_prompts(tiny_lm, ["Hi", "Tell me a longer story, please"])]
    assert n >= 1 and rows[0][-n:] == rows[1][-n:]  # the template's tail, the same for both
    assert rows[0][-n - 1] != rows[1][-n - 1]  # one more token back is the instruction's own


def test_prompt_end_activations_equal_hf_hidden_states_of_each_prompt_alone(tiny_lm):
    prompts = chat_prompts(tiny_lm, ["Hi", "Tell me a longer story, please, with many more words"])
    n = post_instruction_length(tiny_lm)
    got = prompt_end_activations(tiny_lm, prompts, "blocks.1.hook_resid_pre", n_last=n, batch_size=2)[
        "blocks.1.hook_resid_pre"
    ]
    assert got.shape == (2, n, tiny_lm.cfg.d_model)
    for i, p in enumerate(prompts):  # no padding here: an independent reference
        with torch.no_grad():
            hs = tiny_lm.hf_model(tiny_lm.to_tokens(p), output_hidden_states=True).hidden_states
        # left padding vs none: the embedding (exact) and layer 0's attention and MLP (2 stages), per token
        numerics.assert_rows_close(torch.from_numpy(got[i]), hs[1][0, -n:].float(), dtype=tiny_lm.dtype, depth=2)
    last = last_token_activations(tiny_lm, prompts, "blocks.1.hook_resid_pre", batch_size=2)["blocks.1.hook_resid_pre"]
    assert (last == got[:, -1]).all()
    with pytest.raises(ConfigError, match="longer than the shortest prompt") as e:
        prompt_end_activations(tiny_lm, ["Hi"], "blocks.1.hook_resid_pre", n_last=50)
    assert "\n" not in str(e.value)
