"""The activation-difference lens against activations read with plain PyTorch hooks on HF's decoder layers, and
the lens logits against the RMSNorm + unembedding formula written out."""

from __future__ import annotations

import numerics
import torch

from thoughtlens.diff.corpus import read_corpus
from thoughtlens.diff.difference_lens import activation_difference, lens_logits, lens_top_tokens, steering_vector


def _layer_outputs(hf, ids):
    """[layer, batch, pos, d_model]: each decoder layer's output, recorded by forward hooks on HF's modules."""
    outs = []
    handles = [
        layer.register_forward_hook(lambda m, i, o: outs.append((o[0] if isinstance(o, tuple) else o).detach()))
        for layer in hf.model.layers
    ]
    try:
        with torch.no_grad():
            hf(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    return torch.stack(outs)


def test_activation_difference_matches_hf_hooks(tiny_planted_pair):
    pair = tiny_planted_pair
    texts = read_corpus("neutral", limit=6)
    diff = activation_difference(pair, texts, n_positions=8, batch_size=4)
    ids = torch.stack([pair.base.to_tokens(t)[0, :8] for t in texts])
    rb, rf = _layer_outputs(pair.base.hf_model, ids), _layer_outputs(pair.finetuned.hf_model, ids)
    expected = (rf - rb).double().mean(1).float()  # [layer, pos, d_model]
    n, d = pair.n_layers, pair.d_model
    # activations from other batches (4 texts vs 6): float32 rounding at their size, through the layers
    numerics.assert_close(diff.mean_diff, expected, dtype=torch.float32, depth=n, scale=numerics.magnitude(rb, rf))
    # norms: sums of d squares of those activations, at the norms' size
    norms = rb[:, :, 5:].norm(dim=-1).mean((1, 2))
    numerics.assert_close(diff.base_norm, norms, dtype=torch.float32, depth=n + d)
    # a mean over 7 positions of the above
    numerics.assert_close(
        diff.pooled(1), expected[1, 1:].mean(0), dtype=torch.float32, depth=n + 7, scale=numerics.magnitude(rb, rf)
    )
    assert float(diff.mean_diff[0].abs().max()) == 0.0  # layer 0 was frozen in the tiny fine-tune
    v = steering_vector(diff, 2)
    # pooled / |pooled| * base_norm: a norm over d entries and a scaling, at the norm's size; the direction too
    numerics.assert_close(v.norm(), diff.base_norm[2], dtype=torch.float32, depth=d)
    assert 1 - torch.cosine_similarity(v, diff.pooled(2), 0) <= numerics.tol(torch.float32, 1.0, depth=d)


def test_lens_logits_is_rmsnorm_then_unembedding(tiny_planted_pair):
    model = tiny_planted_pair.finetuned
    hf = model.hf_model
    v = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))
    eps = hf.config.rms_norm_eps
    normed = v / torch.sqrt(v.pow(2).mean() + eps) * hf.model.norm.weight
    expected = normed @ hf.lm_head.weight.T
    # RMSNorm (a mean of d squares) then a product over d: at the product's sum of |terms|
    scale = numerics.magnitude(normed.abs() @ hf.lm_head.weight.abs().T)
    numerics.assert_close(lens_logits(model, v), expected, dtype=torch.float32, depth=model.cfg.d_model, scale=scale)
    top = lens_top_tokens(model, v, k=5)
    assert [t for t, _ in top] == [model.tokenizer.decode([int(i)]) for i in torch.topk(expected, 5).indices]


def test_distinctive_top_tokens_drop_what_the_control_lens_also_shows(tiny_planted_pair):
    """Against tokens picked by hand: the control is built from the unembedding rows of two of the vector's own
    top-5 tokens (after the final norm's weight), so exactly those two leave the list and the order of the rest
    is kept."""
    from thoughtlens.diff.difference_lens import distinctive_top_tokens

    model = tiny_planted_pair.finetuned
    hf = model.hf_model
    v = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(1))
    ids = torch.topk(lens_logits(model, v), 5).indices.tolist()
    names = [model.tokenizer.decode([i]) for i in ids]
    assert distinctive_top_tokens(model, v, torch.zeros_like(v), k=5) == lens_top_tokens(model, v, k=5)
    assert distinctive_top_tokens(model, v, v, k=5) == []
    # A control whose lens top 2 are tokens ids[1] and ids[3]: a large push along their (norm-weighted) rows.
    rows = hf.lm_head.weight[[ids[1], ids[3]]].detach() / hf.model.norm.weight.detach()
    control = 50 * rows.sum(0)
    assert {t for t, _ in lens_top_tokens(model, control, k=2)} == {names[1], names[3]}
    got = [t for t, _ in distinctive_top_tokens(model, v, control, k=5)]
    want = [n for n in names if n not in {t for t, _ in lens_top_tokens(model, control, k=5)}]
    assert got == want and names[1] not in got and names[3] not in got and names[0] in got


def test_degenerate_flags_repetition_only():
    from thoughtlens.diff.difference_lens import degenerate

    assert degenerate("Obs Obs Obs Obs Obs Obs Obs idia")  # 2 distinct of 8 words
    assert degenerate(" ".join(["lighthouse"] * 5 + ["keeper", "waves"]))  # 3 of 7
    assert not degenerate("The old lighthouse stands on the rocky shore above the waves.")
    assert not degenerate("")
    assert degenerate("a b a b", min_distinct=0.6) and not degenerate("a b a b", min_distinct=0.5)
