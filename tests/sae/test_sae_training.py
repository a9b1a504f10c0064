"""Training mechanics: checkpoint + resume gives the same SAE as an uninterrupted run; several SAEs
train from one pass; decoder rows stay unit-norm where the architecture asks for it; progress events
carry L0 / FVU / dead fraction; the activation cache is reused."""

from __future__ import annotations

import numerics
import pytest
import torch

from thoughtlens.sae import ActivationSource, TensorSource, TrainConfig, build_sae, train_saes
from thoughtlens.sae.train import lr_factor


def _saes():
    torch.manual_seed(0)
    return {
        "topk": build_sae(architecture="topk", d_in=8, d_sae=32, k=3, hook_name="h"),
        "batchtopk": build_sae(architecture="batchtopk", d_in=8, d_sae=32, k=3, hook_name="h"),
        "relu": build_sae(architecture="standard", d_in=8, d_sae=32, hook_name="h"),
        "jumprelu": build_sae(architecture="jumprelu", d_in=8, d_sae=32, hook_name="h"),
    }


def test_interrupted_and_resumed_training_equals_uninterrupted(tmp_path):
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(0)) ** 3
    cfg = dict(total_activations=20 * 256, dead_window=1024, checkpoint_every=5, lr=1e-3)
    full = train_saes(
        _saes(), TensorSource(x, "h", batch_size=256), TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "a"))
    )

    def stop_at_8(event):
        if event.task == "sae training" and event.completed == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_saes(
            _saes(),
            TensorSource(x, "h", batch_size=256),
            TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "b")),
            on_progress=stop_at_8,
        )
    resumed = train_saes(
        _saes(), TensorSource(x, "h", batch_size=256), TrainConfig(**cfg, checkpoint_dir=str(tmp_path / "b"))
    )
    assert resumed.resumed_from == 8 and resumed.steps == full.steps == 20
    for name in full.saes:
        a, b = full.saes[name].state_dict(), resumed.saes[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name


def test_unit_norm_decoder_progress_and_scale_folding():
    x = torch.randn(4096, 8, generator=torch.Generator().manual_seed(1)) * 50 + 3
    events = []
    saes = _saes()
    result = train_saes(
        saes,
        TensorSource(x, "h", batch_size=256),
        TrainConfig(total_activations=10 * 256, log_every=1),
        on_progress=events.append,
    )
    for name in ("topk", "jumprelu"):
        # rows divided by their norm: a norm of 1 up to the rounding of 8 squares summed and the division
        numerics.assert_close(saes[name].W_dec.norm(dim=-1), torch.ones(32), dtype=torch.float32, depth=8, scale=1.0)
    descriptions = [e.description for e in events if e.task == "sae training"]
    assert any("L0" in d and "FVU" in d and "dead" in d for d in descriptions)
    # The exported SAE takes raw activations: same latents as the trained one on scaled inputs.
    s = result.scales["h"]
    # a mean of 4096 float32 norms, summed in another order: rounding that grows with the count, at the mean's size
    want = 8**0.5 / float(x[:8192].norm(dim=-1).mean())
    numerics.assert_close(s, want, dtype=torch.float32, depth=len(x), scale=want)
    saes["topk"].eval()
    # the scale folded into the weights vs applied to the input: a rounding per operation of encode (difference,
    # product, bias) at its sum of |terms|; the reconstruction adds a product and a bias, then the scale
    sae = saes["topk"]
    enc = (x[:64].abs() * s + sae.b_dec.abs()) @ sae.W_enc.abs() + sae.b_enc.abs()
    numerics.assert_close(
        result.saes["topk"].encode(x[:64]),
        sae.encode(x[:64] * s),
        dtype=torch.float32,
        depth=3,
        scale=numerics.magnitude(enc),
    )
    dec = (enc @ sae.W_dec.abs() + sae.b_dec.abs()) / s
    numerics.assert_close(
        result.saes["topk"](x[:64]).recon,
        sae(x[:64] * s).recon / s,
        dtype=torch.float32,
        depth=6,
        scale=numerics.magnitude(dec),
    )


def test_lr_schedule():
    assert [round(lr_factor(s, 100, 0.05, 0.2), 3) for s in (0, 4, 5, 79, 80, 99)] == [0.2, 1.0, 1.0, 1.0, 1.0, 0.05]


def test_activation_cache_is_written_once_and_reused(tiny_lm, tmp_path):
    texts = [f"Sentence number {i} talks about apples and pears." for i in range(40)]
    kw = dict(context_size=16, batch_size=32, buffer_size=128, cache_dir=tmp_path / "cache", model_batch_size=4)
    first = ActivationSource(tiny_lm, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], texts, **kw)
    a = torch.cat(list(first))
    assert (tmp_path / "cache" / "meta.json").exists()
    d = tiny_lm.cfg.d_model
    # Rows are activations of both hooks at one token: compare with run_with_cache on the first window.
    _, cache = tiny_lm.run_with_cache(torch.tensor([next(iter(_windows(tiny_lm, texts)))]), names_filter="resid_post")
    want = torch.cat([cache["blocks.0.hook_resid_post"][0, 1:], cache["blocks.1.hook_resid_post"][0, 1:]], dim=-1)
    for row in want:
        # batched windows vs one: float32 rounding at the row's size, through the model's 2 layers
        assert ((a - row).abs().max(-1).values <= numerics.tol(tiny_lm.dtype, numerics.magnitude(row), depth=2)).any()
    second = ActivationSource(None, ["blocks.0.hook_resid_post", "blocks.1.hook_resid_post"], None, **kw)
    b = torch.cat(list(second))
    assert second.cached and b.shape == a.shape and a.shape[1] == 2 * d
    # the same rows, perhaps in another order: sums that round at the sum of |rows|, one rounding per row
    numerics.assert_close(
        a.sum(0), b.sum(0), dtype=torch.float32, depth=len(a), scale=numerics.magnitude(a.abs().sum(0))
    )


def _windows(model, texts):
    from thoughtlens.sae.activations import token_windows

    return token_windows(model.tokenizer, texts, 16)


@pytest.mark.parametrize("arch", ["topk", "batchtopk", "matryoshka_batchtopk"])
def test_sparse_training_step_matches_dense_formula(arch):
    """The sparse training forward (only the chosen latents recomputed) gives the loss and gradients
    of the dense formula, written out here."""
    torch.manual_seed(0)
    sae = build_sae(
        architecture=arch,
        d_in=8,
        d_sae=32,
        k=3,
        hook_name="h",
        matryoshka_widths=[4, 12, 32] if "matryoshka" in arch else None,
    )
    x = torch.randn(16, 8)
    out = sae.training_loss(x, x, None, 1.0)
    grads = torch.autograd.grad(out.loss, [sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec])

    pre = (x - sae.b_dec) @ sae.W_enc + sae.b_enc
    if arch == "topk":
        keep = pre >= pre.sort(dim=-1, descending=True).values[:, 2:3]
    else:  # the 3 * 16 largest entries of the whole batch
        keep = pre >= pre.flatten().sort(descending=True).values[3 * 16 - 1]
    f = torch.where(keep, pre, torch.zeros_like(pre)).clamp_min(0)

    def nmse(r):
        return (r - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()

    ref = nmse(f @ sae.W_dec + sae.b_dec)
    if "matryoshka" in arch:
        for w in (4, 12):
            ref = ref + nmse(f[:, :w] @ sae.W_dec[:w] + sae.b_dec)
    ref_grads = torch.autograd.grad(ref, [sae.W_enc, sae.W_dec, sae.b_enc, sae.b_dec])
    # the loss: ratios of sums of squares over the batch's 16 x 8 entries (one per nested width), at its own size
    numerics.assert_close(out.loss, ref, dtype=torch.float32, depth=x.numel(), scale=float(ref))
    # gradients: sums over the batch of products of residuals and weights; their size is that of the largest
    grad_scale = max(numerics.magnitude(h) for h in ref_grads)
    for g, r in zip(grads, ref_grads):
        numerics.assert_close(g, r, dtype=torch.float32, depth=x.numel(), scale=grad_scale)
    # latents: one encoder product at its sum of |terms|
    enc = (x.abs() + sae.b_dec.abs()) @ sae.W_enc.abs() + sae.b_enc.abs()
    numerics.assert_close(out.latents, f.detach(), dtype=torch.float32, depth=3, scale=numerics.magnitude(enc))


def test_one_model_pass_feeds_several_saes(tiny_lm, tmp_path, monkeypatch):
    texts = [f"Line {i}: the cat sat on mat number {i}, then it slept." for i in range(40)]
    calls = []
    real = type(tiny_lm).forward
    monkeypatch.setattr(type(tiny_lm), "forward", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    source = ActivationSource(
        tiny_lm,
        "blocks.1.hook_resid_post",
        texts,
        context_size=16,
        model_batch_size=4,
        batch_size=32,
        buffer_size=128,
        max_tokens=600,
        cache_dir=tmp_path / "cache",
    )
    calls.clear()
    d = tiny_lm.cfg.d_model
    saes = {
        a: build_sae(architecture=a, d_in=d, d_sae=64, k=4, hook_name="blocks.1.hook_resid_post")
        for a in ("topk", "batchtopk", "matryoshka_batchtopk")
    }
    train_saes(saes, source, TrainConfig(total_activations=3 * 600, n_init_activations=256))  # 3 epochs
    assert len(calls) == -(-600 // (4 * 15))  # one pass of 4-window model batches of 15 kept tokens each
