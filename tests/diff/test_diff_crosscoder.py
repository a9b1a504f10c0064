"""The BatchTopK crosscoder (thoughtlens.diff.crosscoder) against known answers:

- synthetic paired activations built from known shared, A-only and B-only directions: the crosscoder
  recovers the directions (mean best cosine >= 0.9) and tags each one with its true class;
- Latent Scaling on a hand-built crosscoder (one latent whose A-decoder was shrunk to ~0 although model A
  carries the concept at 0.6 strength, one truly B-only latent): betas equal an ordinary least-squares fit
  computed here with torch.linalg.lstsq, and only the truly B-only latent passes;
- two tiny random Llamas where B = A plus a planted direction on a set of trigger tokens: the B-only
  latent the crosscoder finds has the trigger tokens as its top contexts;
- save / load (safetensors + json), and one-line errors for mismatched pairs and NaN activations.
"""

from __future__ import annotations

import copy
import json
import random

import numerics
import pytest
import torch

from thoughtlens.diff.crosscoder import (
    BatchTopKCrosscoder,
    CrosscoderResult,
    PairedActivationSource,
    analyse_latents,
    build_crosscoder,
    check_pair,
    fit_crosscoder,
    latent_scaling,
    load_crosscoder,
    norm_table,
    save_crosscoder,
    top_contexts,
    train_crosscoder,
)
from thoughtlens.errors import SAEError, ThoughtlensError
from thoughtlens.sae import TensorSource, TrainConfig


def _unit(n: int, d: int, g: torch.Generator) -> torch.Tensor:
    v = torch.randn(n, d, generator=g)
    return v / v.norm(dim=-1, keepdim=True)


@pytest.mark.slow
def test_crosscoder_recovers_and_classifies_shared_a_only_b_only_features():
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    d, n_sh, n_a, n_b = 16, 12, 4, 4
    shared_a = _unit(n_sh, d, g)
    shared_b = shared_a + 0.2 * _unit(n_sh, d, g)  # a shared concept may move a little between models
    shared_b = shared_b / shared_b.norm(dim=-1, keepdim=True)
    a_only, b_only = _unit(n_a, d, g), _unit(n_b, d, g)
    dir_a = torch.cat([shared_a, a_only, torch.zeros(n_b, d)])  # [features, d] in model A
    dir_b = torch.cat([shared_b, torch.zeros(n_a, d), b_only])  # [features, d] in model B
    truth = ["shared"] * n_sh + ["a_only"] * n_a + ["b_only"] * n_b
    n = 20_000
    coeffs = (torch.rand(n, len(truth), generator=g) < 0.08) * (1 + 0.2 * torch.randn(n, len(truth), generator=g)).abs()
    x = torch.cat([coeffs @ dir_a, coeffs @ dir_b], dim=1) + 0.01 * torch.randn(n, 2 * d, generator=g)

    cc, _ = fit_crosscoder(
        TensorSource(x, "h", batch_size=256),
        64,
        2,
        TrainConfig(total_activations=400_000, lr=3e-3, dead_window=5000, n_init_activations=4096),
    )

    true_dirs = torch.cat([dir_a, dir_b], dim=1)
    true_dirs = true_dirs / true_dirs.norm(dim=-1, keepdim=True)
    learned = cc.W_dec.detach() / cc.W_dec.detach().norm(dim=-1, keepdim=True)  # raw decoders [d_sae, 2d]
    best = (true_dirs @ learned.T).max(dim=1)
    assert float(best.values.mean()) >= 0.9, best.values
    rows = analyse_latents(cc, x)
    got = [rows[j]["cls"] for j in best.indices.tolist()]
    assert got == truth
    # Latent Scaling mostly agrees: the latents of the model-specific features carry little in the other
    # model (its exact arithmetic is checked on the hand-built case below; here a short training run
    # leaves some nu_recon near the 0.3 cut, so 6 of the 8 must pass).
    passed = [rows[j]["specific"] for j, t in zip(best.indices.tolist(), truth) if t != "shared"]
    assert sum(passed) >= 6, [(rows[j]["nu_error"], rows[j]["nu_recon"]) for j in best.indices.tolist()[n_sh:]]


def _hand_built() -> tuple[BatchTopKCrosscoder, torch.Tensor]:
    """d_model 4, three latents. Latent 0: model A carries its concept at 0.6 strength but its A-decoder
    was shrunk to 0.02 (Complete Shrinkage). Latent 1: shared. Latent 2: truly B-only."""
    d = 4
    cc = build_crosscoder(d, 3, k=3).eval()
    e = torch.eye(d)
    with torch.no_grad():
        cc.W_enc.zero_()
        cc.W_enc[d + 0, 0] = 1.0  # latent 0 reads x_B[0]
        cc.W_enc[1, 1] = 1.0  # latent 1 reads x_A[1]
        cc.W_enc[d + 2, 2] = 1.0  # latent 2 reads x_B[2]
        cc.b_enc.zero_()
        cc.W_dec.copy_(
            torch.stack([torch.cat([0.02 * e[0], e[0]]), torch.cat([e[1], e[1]]), torch.cat([0 * e[2], e[2]])])
        )
        cc.b_dec.zero_()
    g = torch.Generator().manual_seed(3)
    n = 2000
    c = (torch.rand(n, 3, generator=g) < 0.3) * (0.5 + torch.rand(n, 3, generator=g))
    noise = 0.05 * torch.randn(n, 2 * d, generator=g)
    x_a = 0.6 * c[:, :1] * e[0] + c[:, 1:2] * e[1]
    x_b = c[:, :1] * e[0] + c[:, 1:2] * e[1] + c[:, 2:3] * e[2]
    return cc, torch.cat([x_a, x_b], dim=1) + noise


def test_latent_scaling_equals_least_squares_and_flags_shrinkage():
    cc, x = _hand_built()
    d = cc.d_model
    ls = latent_scaling(cc, x.split(512), [0, 2], own=1)
    f = cc.encode(x).detach()
    recon = cc.decode(f).detach()
    w = cc.W_dec.detach()
    for i, j in enumerate([0, 2]):
        probe = w[j, d:]  # the latent's B-decoder
        for m, sl in enumerate([slice(0, d), slice(d, 2 * d)]):
            err = x[:, sl] - recon[:, sl] + f[:, j : j + 1] * w[j, sl]  # error with latent j's own part added back
            design = (f[:, j : j + 1] * probe).reshape(-1, 1).double()  # beta * f_j(x) * d_j, flattened
            # the float32 error vectors round at |x| + |x_hat| + |own part|; beta divides their projections
            # sum_i |f_ij| <|x_i| + ..., |probe|> by sum_i f_ij^2 |probe|^2 (a few operations deep)
            terms = x[:, sl].abs() + recon[:, sl].abs() + (f[:, j : j + 1] * w[j, sl]).abs()
            scale = float((f[:, j].abs() * (terms @ probe.abs())).sum() / design.pow(2).sum())
            for target, beta in ((err, ls.beta_error[m, i]), (recon[:, sl], ls.beta_recon[m, i])):
                want = torch.linalg.lstsq(design, target.reshape(-1, 1).double()).solution.item()
                numerics.assert_close(float(beta), want, dtype=torch.float32, depth=3, scale=scale)
    # Latent 0 looks B-only by decoder norms, but model A still carries 60 % of it; latent 2 does not.
    assert float(ls.nu_error[0]) == pytest.approx(0.6, abs=0.05)
    assert abs(float(ls.nu_error[1])) < 0.05 and abs(float(ls.nu_recon[1])) < 0.05
    rows = analyse_latents(cc, x)
    assert [r["cls"] for r in rows] == ["b_only", "shared", "b_only"]
    assert [r["specific"] for r in rows] == [False, False, True]
    n = w.reshape(3, 2, d).norm(dim=-1)
    # ratios (<= 1) of float32 norms over d entries, the table's in float64
    numerics.assert_close(
        [r["relative_norm"] for r in norm_table(cc)], n[:, 1] / n.sum(-1), dtype=torch.float32, depth=d, scale=1.0
    )


def test_save_load_round_trip_is_exact(tmp_path):
    cc, x = _hand_built()
    with torch.no_grad():
        for p in cc.parameters():
            p.add_(0.1 * torch.randn_like(p))
    cc.topk_threshold.fill_(0.05)
    cc.fold_model_scales(2.0, 0.5)
    path = save_crosscoder(cc, tmp_path / "cc")
    assert sorted(p.name for p in path.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    loaded = load_crosscoder(path)
    torch.testing.assert_close(loaded(x).recon, cc(x).recon, rtol=0, atol=0)
    torch.testing.assert_close(loaded.decoder_norms(), cc.decoder_norms(), rtol=0, atol=0)
    rows = analyse_latents(cc, x)
    result = CrosscoderResult(cc, rows, [2], {2: [{"activation": 1.0, "token": " a"}]}, [], {"hook": "h"})
    back = CrosscoderResult.load(result.save(tmp_path / "result"))
    assert (
        back.latents == json.loads(json.dumps(rows)) and back.specific == [2] and back.contexts[2][0]["token"] == " a"
    )
    json.dumps(back.to_json(), allow_nan=False)
    with pytest.raises(SAEError, match="not a crosscoder"):
        from thoughtlens.sae import build_sae, save_sae

        load_crosscoder(save_sae(build_sae(architecture="topk", d_in=4, d_sae=3, k=1), tmp_path / "topk"))


# ---- tiny models --------------------------------------------------------------------------------------


def _tiny(tok, hidden: int = 32, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    from thoughtlens.model.hooked_model import HookedModel

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
    )
    return LlamaForCausalLM(config).eval(), HookedModel


@pytest.mark.slow
def test_tiny_pair_b_only_latent_reads_the_planted_trigger_tokens(smol_tokenizer):
    torch.set_num_threads(1)
    tok = smol_tokenizer
    hf_a, Hooked = _tiny(tok)
    hf_b = copy.deepcopy(hf_a)
    # Vocabulary: 1500 common lower-case words; 150 of them are triggers. B = A plus a planted direction
    # v added to the residual stream at every trigger token (written into B's embedding rows, i.e.
    # blocks.0.hook_resid_pre + v at those positions), of about the residual's own norm.
    vocab = sorted(
        (i, t)
        for t, i in tok.get_vocab().items()
        if t.startswith("\u0120") and t[1:].isalpha() and t[1:].islower() and len(t) >= 5
    )
    words = [tok.decode([i]) for i, _ in vocab[:1500]]
    rng = random.Random(0)
    triggers = {tok(w, add_special_tokens=False)["input_ids"][0] for w in rng.sample(words, 150)}
    v = torch.randn(32, generator=torch.Generator().manual_seed(1))
    v = 0.1 * v / v.norm()
    with torch.no_grad():
        hf_b.model.embed_tokens.weight[sorted(triggers)] += v
    a, b = Hooked(hf_a, tok, name="A"), Hooked(hf_b, tok, name="B")
    texts = ["".join(rng.choice(words) for _ in range(30)).strip() for _ in range(400)]

    ids = torch.tensor([[tok.bos_token_id, *tok(texts[0], add_special_tokens=False)["input_ids"]]])
    _, ca = a.run_with_cache(ids, names_filter="blocks.0.hook_resid_pre")
    _, cb = b.run_with_cache(ids, names_filter="blocks.0.hook_resid_pre")
    planted = torch.tensor([t in triggers for t in ids[0].tolist()])
    diff = (cb["blocks.0.hook_resid_pre"] - ca["blocks.0.hook_resid_pre"])[0]
    # (e + v) - e in float32: two roundings at the size of the embedding rows plus v
    numerics.assert_close(
        diff[planted],
        v.expand(int(planted.sum()), -1),
        dtype=torch.float32,
        depth=2,
        scale=numerics.magnitude(cb["blocks.0.hook_resid_pre"]) + numerics.magnitude(v),
    )
    assert planted.any() and bool((diff[~planted] == 0).all())

    res = train_crosscoder(
        a, b, texts, layer=1, expansion=4, k=4, max_tokens=12_000, epochs=20, context_size=64, batch_size=256, lr=3e-3
    )
    assert res.specific, res.counts()
    top = res.specific[0]
    contexts = res.contexts[top]
    assert len(contexts) == 10
    on_trigger = sum(c["token_id"] in triggers for c in contexts)
    assert on_trigger >= 9, [c["token"] for c in contexts]
    # Decoded from the tokens, so the page can show them: the token ends the left context's window.
    assert all(isinstance(c["left"], str) and c["token"] == tok.decode([c["token_id"]]) for c in contexts)
    # The contexts were read from the activation cache in corpus order; running the models again agrees.
    again = top_contexts(res.crosscoder, a, b, texts, [top], context_size=64, max_tokens=12_000)[top]
    assert [(c["window"], c["position"], c["token_id"]) for c in again] == [
        (c["window"], c["position"], c["token_id"]) for c in contexts
    ]
    page = res.to_json()
    assert top in page["specific"] and any(r["latent"] == top and r["contexts"] for r in page["model_specific"])


# ---- bad input ----------------------------------------------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_mismatched_pairs_give_one_line_errors(smol_tokenizer):
    hf_a, Hooked = _tiny(smol_tokenizer)
    hf_wide, _ = _tiny(smol_tokenizer, hidden=48)
    a, wide = Hooked(hf_a, smol_tokenizer, name="A"), Hooked(hf_wide, smol_tokenizer, name="W")
    with pytest.raises(SAEError) as exc:
        check_pair(a, wide, "blocks.1.hook_resid_post")
    assert "32" in _one_line(exc) and "48" in str(exc.value)
    other_tok = copy.deepcopy(smol_tokenizer)
    other_tok.add_tokens(["zzplantedzz"])
    with pytest.raises(SAEError) as exc:
        check_pair(a, Hooked(copy.deepcopy(hf_a), other_tok, name="T"), "blocks.1.hook_resid_post")
    assert "same tokenizer" in _one_line(exc)
    with pytest.raises(SAEError) as exc:
        fit_crosscoder(TensorSource(torch.randn(600, 7), "h", batch_size=64), 8, 2, TrainConfig(total_activations=64))
    assert "even" in _one_line(exc)
    b = Hooked(copy.deepcopy(hf_a), smol_tokenizer, name="B")
    with pytest.raises(ThoughtlensError) as exc:
        train_crosscoder(a, b, "/nonexistent/corpus.txt", layer=1)
    assert "not found" in _one_line(exc)
    with pytest.raises(SAEError) as exc:
        train_crosscoder(a, b, ["too short"], layer=1)
    assert "too few" in _one_line(exc)
    with pytest.raises(SAEError) as exc:
        train_crosscoder(a, b, ["some text"] * 50, layer=7)
    assert "out of range" in _one_line(exc)


def test_nan_activations_give_one_line_errors(smol_tokenizer):
    cc, x = _hand_built()
    x[5, 2] = float("nan")
    with pytest.raises(SAEError) as exc:
        analyse_latents(cc, x)
    assert "NaN" in _one_line(exc)
    hf_a, Hooked = _tiny(smol_tokenizer)
    hf_b = copy.deepcopy(hf_a)
    with torch.no_grad():
        hf_b.model.layers[0].mlp.down_proj.weight.fill_(float("nan"))
    a, b = Hooked(hf_a, smol_tokenizer, name="A"), Hooked(hf_b, smol_tokenizer, name="B")
    source = PairedActivationSource(
        a,
        b,
        "blocks.1.hook_resid_post",
        ["some words here and there"] * 40,
        context_size=16,
        batch_size=32,
        buffer_size=64,
    )
    with pytest.raises(SAEError) as exc:
        next(iter(source))
    assert "NaN" in _one_line(exc)


def test_interrupted_training_resumes_to_the_same_weights(tmp_path):
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0)) ** 3
    cfg = dict(total_activations=20 * 256, dead_window=1024, checkpoint_every=5, lr=1e-3, n_init_activations=1024)
    full, _ = fit_crosscoder(
        TensorSource(x, "h", batch_size=256), 16, 2, TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "a"))
    )

    def stop_at_8(event):
        if event.task == "sae training" and event.completed == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit_crosscoder(
            TensorSource(x, "h", batch_size=256),
            16,
            2,
            TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "b")),
            on_progress=stop_at_8,
        )
    resumed, result = fit_crosscoder(
        TensorSource(x, "h", batch_size=256), 16, 2, TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "b"))
    )
    assert result.resumed_from == 8 and result.steps == 20
    a, b = full.state_dict(), resumed.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
