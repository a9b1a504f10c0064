"""Interop with SAELens's on-disk format (cfg.json + sae_weights.safetensors).

Files are written here by hand in SAELens's layout (v6: hook under `metadata`; pre-6: top-level
`hook_point`, `activation_fn_str`), with known weights, and the SAE's outputs are checked against the
architecture's formula computed in the test."""

from __future__ import annotations

import json

import numerics
import pytest
import torch
from safetensors.torch import load_file, save_file

import thoughtlens
from thoughtlens.sae import ARCHITECTURES, build_sae, save_sae

D_IN, D_SAE = 4, 6


def _known(seed: int = 0, d_out: int = D_IN):
    g = torch.Generator().manual_seed(seed)
    return {
        "W_enc": torch.randn(D_IN, D_SAE, generator=g),
        "b_enc": torch.randn(D_SAE, generator=g) * 0.1,
        "W_dec": torch.randn(D_SAE, d_out, generator=g),
        "b_dec": torch.randn(d_out, generator=g) * 0.1,
    }


def _write(dirpath, cfg: dict, weights: dict):
    dirpath.mkdir(parents=True, exist_ok=True)
    (dirpath / "cfg.json").write_text(json.dumps(cfg))
    save_file(weights, str(dirpath / "sae_weights.safetensors"))
    return dirpath


def _v6(arch: str, **extra) -> dict:
    return {
        "architecture": arch,
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": "6.5.1", "model_name": "gpt2", "hook_name": "blocks.3.hook_resid_post"},
        **extra,
    }


X = torch.randn(7, D_IN, generator=torch.Generator().manual_seed(5))


def _assert_formula(got, want, size, *, depth: int) -> None:
    """The module vs the formula written out, both in float32: rounding at `size` (the sums of |terms| of the
    formula's products), `depth` operations deep (encoding: difference, product, bias; decoding three more)."""
    numerics.assert_close(got, want, dtype=torch.float32, depth=depth, scale=numerics.magnitude(size))


def _encoder_size(w, x=X, *, b_dec=True):
    """[n, d_sae]: the sum of |terms| of (x - b_dec) W_enc + b_enc."""
    return ((x.abs() + (w["b_dec"].abs() if b_dec else 0)) @ w["W_enc"].abs()) + w["b_enc"].abs()


def test_hand_written_saelens_jumprelu_loads_and_encodes_by_formula(tmp_path):
    w = _known()
    w["threshold"] = torch.tensor([0.0, 0.1, 0.2, 0.3, 5.0, 0.05])
    sae = thoughtlens.load_sae(_write(tmp_path / "jr", _v6("jumprelu"), w))
    assert sae.cfg.architecture == "jumprelu" and sae.cfg.hook_name == "blocks.3.hook_resid_post"
    pre = (X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    expected = torch.where(pre > w["threshold"], pre, torch.zeros_like(pre)).clamp_min(0)
    recon, latents = sae(X)
    enc = _encoder_size(w)
    _assert_formula(latents, expected, enc, depth=3)
    _assert_formula(recon, expected @ w["W_dec"] + w["b_dec"], enc @ w["W_dec"].abs() + w["b_dec"].abs(), depth=6)


def test_hand_written_saelens_topk_and_legacy_configs(tmp_path):
    w = _known(1)
    pre = (X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    kth = pre.sort(dim=-1, descending=True).values[:, 1:2]  # k = 2
    expected = torch.where(pre >= kth, pre, torch.zeros_like(pre)).clamp_min(0)
    v6 = thoughtlens.load_sae(_write(tmp_path / "v6", _v6("topk", k=2, rescale_acts_by_decoder_norm=False), w))
    # SAELens < 6: hook at top level under its old name, TopK as an activation function of "standard".
    legacy_cfg = {
        "d_in": D_IN,
        "d_sae": D_SAE,
        "dtype": "torch.float32",
        "hook_point": "blocks.3.hook_resid_post",
        "model_name": "gpt2",
        "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 2},
        "apply_b_dec_to_input": True,
        "normalize_activations": False,
        "sae_lens_version": "3.2.0",
    }
    legacy = thoughtlens.load_sae(_write(tmp_path / "legacy", legacy_cfg, w))
    for sae in (v6, legacy):
        assert sae.cfg.architecture == "topk" and sae.cfg.k == 2 and sae.cfg.hook_name == "blocks.3.hook_resid_post"
        _assert_formula(sae.encode(X), expected, _encoder_size(w), depth=3)


def test_saelens_topk_with_decoder_norm_rescaling(tmp_path):
    w = _known(2)
    norms = w["W_dec"].norm(dim=-1)
    sae = thoughtlens.load_sae(_write(tmp_path / "r", _v6("topk", k=3, rescale_acts_by_decoder_norm=True), w))
    pre = ((X - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) * norms
    kth = pre.sort(dim=-1, descending=True).values[:, 2:3]
    f = torch.where(pre >= kth, pre, torch.zeros_like(pre)).clamp_min(0)
    _assert_formula(
        sae(X).recon,
        (f / norms) @ w["W_dec"] + w["b_dec"],
        _encoder_size(w) @ w["W_dec"].abs() + w["b_dec"].abs(),
        depth=8,
    )  # and the norms' scaling


def test_hand_written_transcoder(tmp_path):
    w = _known(3, d_out=3)
    cfg = {**_v6("transcoder", d_out=3), "apply_b_dec_to_input": False}
    cfg["metadata"]["hook_name"] = "blocks.3.ln2.hook_normalized"
    sae = thoughtlens.load_sae(_write(tmp_path / "tc", cfg, w))
    f = (X @ w["W_enc"] + w["b_enc"]).clamp_min(0)  # no b_dec on the input
    _assert_formula(
        sae(X).recon,
        f @ w["W_dec"] + w["b_dec"],
        _encoder_size(w, b_dec=False) @ w["W_dec"].abs() + w["b_dec"].abs(),
        depth=5,
    )


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_thoughtlens_save_load_round_trip_is_exact(tmp_path, arch):
    torch.manual_seed(0)
    kw = {"k": 2} if "topk" in arch else {}
    if arch == "transcoder":
        kw = {"d_out": 3, "apply_b_dec_to_input": False, "hook_name_out": "blocks.3.hook_mlp_out"}
    sae = build_sae(architecture=arch, d_in=D_IN, d_sae=D_SAE, hook_name="blocks.3.hook_resid_post", **kw).eval()
    with torch.no_grad():
        for p in sae.parameters():
            p.copy_(torch.randn_like(p))
        if hasattr(sae, "topk_threshold"):
            sae.topk_threshold.fill_(0.25)
    path = save_sae(sae, tmp_path / arch)
    loaded = thoughtlens.load_sae(path)
    # BatchTopK / Matryoshka are saved as the JumpReLU they are at inference (as SAELens does).
    assert loaded.cfg.architecture == ("jumprelu" if arch in ("batchtopk", "matryoshka_batchtopk") else arch)
    torch.testing.assert_close(loaded(X).recon, sae(X).recon, rtol=0, atol=0)
    torch.testing.assert_close(loaded(X).latents, sae(X).latents, rtol=0, atol=0)
    again = save_sae(loaded, tmp_path / f"{arch}_again")
    first, second = load_file(str(path / "sae_weights.safetensors")), load_file(str(again / "sae_weights.safetensors"))
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    cfg = json.loads((path / "cfg.json").read_text())
    # What SAELens reads: top-level widths and architecture, hook under metadata, a v6 version.
    assert (cfg["d_in"], cfg["d_sae"], cfg["metadata"]["hook_name"]) == (D_IN, D_SAE, "blocks.3.hook_resid_post")
    assert int(cfg["metadata"]["sae_lens_version"].split(".")[0]) >= 6
    assert set(first) == {"W_enc", "b_enc", "W_dec", "b_dec"} | (
        {"threshold"} if cfg["architecture"] == "jumprelu" else set()
    )
