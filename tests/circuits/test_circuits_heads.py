"""Head detectors and weight circuits: hand-computed masks, loops over cached patterns, and a trained
2-layer attention-only toy whose induction circuit the tools must find on their own."""

from __future__ import annotations

import numerics
import pytest
import torch
from tiny_models import random_tokens, tiny_hf
from transformers import AutoModelForCausalLM, LlamaConfig

from thoughtlens import HookedModel
from thoughtlens.circuits import composition_scores, detect, induction_scores, repeated_random_tokens
from thoughtlens.circuits.heads import duplicate_token_mask, induction_mask
from thoughtlens.errors import ThoughtlensError


def test_masks_by_hand():
    tokens = torch.tensor([[9, 4, 5, 4, 5]])
    dup = duplicate_token_mask(tokens)[0]
    ind = induction_mask(tokens)[0]
    assert dup.nonzero().tolist() == [[3, 1], [4, 2]]  # each 4 / 5 sees its earlier copy
    assert ind.nonzero().tolist() == [[3, 2], [4, 3]]  # ... and the token after that copy


def test_detector_scores_equal_a_loop_over_cached_patterns():
    model = HookedModel(tiny_hf("llama"))
    tokens = torch.cat([random_tokens(pos=8), random_tokens(pos=8)], dim=1)
    scores = detect(model, tokens)
    _, cache = model.run_with_cache(tokens, names_filter="pattern")
    L, h, b_n, n = 1, 3, tokens.shape[0], tokens.shape[1]
    A = cache["pattern", L][:, h]
    prev = sum(float(A[b, i, i - 1]) for b in range(b_n) for i in range(1, n)) / (b_n * (n - 1))
    bos = sum(float(A[b, i, 0]) for b in range(b_n) for i in range(1, n)) / (b_n * (n - 1))
    ind_rows = []
    for b in range(b_n):
        for i in range(n):
            js = [j + 1 for j in range(i) if tokens[b, j] == tokens[b, i]]
            if js:
                ind_rows.append(sum(float(A[b, i, j]) for j in js))
    # the same float32 patterns, averaged in another order: means of probabilities (<= 1), one rounding per
    # averaged entry
    depth = b_n * (n - 1)
    numerics.assert_close(float(scores["previous_token"][L, h]), prev, dtype=torch.float32, depth=depth, scale=1.0)
    numerics.assert_close(float(scores["bos"][L, h]), bos, dtype=torch.float32, depth=depth, scale=1.0)
    numerics.assert_close(
        float(scores["induction"][L, h]), sum(ind_rows) / len(ind_rows), dtype=torch.float32, depth=depth, scale=1.0
    )
    assert scores["induction"].shape == (model.cfg.n_layers, model.cfg.n_heads)


def test_detectors_need_repeats_and_known_names():
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(ThoughtlensError, match="repeated"):
        detect(model, torch.arange(10)[None], ["induction"])
    with pytest.raises(ThoughtlensError, match="unknown detector"):
        detect(model, random_tokens(), ["banana"])


def _train_toy_induction_model(steps: int = 400, seed: int = 0):
    """2-layer attention-only Llama (MLPs zeroed and frozen) trained on BOS, r, gap, r, filler.

    The gap between the two copies of r varies (0..8), so the second copy cannot be predicted from
    position alone: the model must learn induction.
    """
    torch.manual_seed(seed)
    V, seg, max_gap, batch = 48, 10, 8, 32
    T = 1 + 2 * seg + max_gap
    cfg = LlamaConfig(
        vocab_size=V,
        hidden_size=64,
        intermediate_size=4,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )
    hf = AutoModelForCausalLM.from_config(cfg, attn_implementation="sdpa", dtype=torch.float32)
    for layer in hf.model.layers:
        for p in layer.mlp.parameters():
            p.data.zero_()
            p.requires_grad_(False)
    opt = torch.optim.Adam([p for p in hf.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(seed)

    def sample():
        x = torch.randint(1, V, (batch, T), generator=g)
        x[:, 0] = 0
        target = torch.zeros(batch, T - 1, dtype=torch.bool)
        for b, gap in enumerate(torch.randint(0, max_gap + 1, (batch,), generator=g).tolist()):
            s = 1 + seg + gap
            x[b, s : s + seg] = x[b, 1 : 1 + seg]
            target[b, s : s + seg - 1] = True  # positions whose next token is predictable by induction
        return x, target

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only add contention on a shared CPU
    try:
        hf.train()
        for _ in range(steps):
            x, target = sample()
            logits = hf(x).logits[:, :-1]
            loss = torch.nn.functional.cross_entropy(logits[target], x[:, 1:][target])
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return HookedModel(hf.eval()), float(loss.detach()), sample()[0]


@pytest.mark.slow
def test_toy_induction_circuit_is_found_automatically():
    model, loss, tokens = _train_toy_induction_model()
    assert loss < 0.5, f"toy did not learn induction (loss {loss:.2f})"
    scores = detect(model, tokens)
    prev, ind = scores["previous_token"], scores["induction"]
    prev_head, ind_head = int(prev[0].argmax()), int(ind[1].argmax())
    assert prev[0, prev_head] > 0.4 and prev[0, prev_head] > 3 * prev[1].max()
    assert ind[1, ind_head] > 0.6 and ind[1, ind_head] > 3 * ind[0].max()
    comp = composition_scores(model)
    top = comp.sort_values("score", ascending=False).iloc[0]
    assert top["kind"] == "K", comp.sort_values("score", ascending=False).head()
    # the strongest composition runs from a previous-token head into an induction head
    assert prev[0, int(top["src_head"])] > 0.3 and ind[1, int(top["dst_head"])] > 0.5
    # and on default repeated random tokens the same heads stand out
    default = induction_scores(model, repeated_random_tokens(model, seq_len=20, batch=2))
    assert int(default.flatten().argmax()) // model.cfg.n_heads == 1
