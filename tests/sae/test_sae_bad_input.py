"""Bad input gets a one-line SAEError that names the fix, and nothing is left half-written."""

from __future__ import annotations

import json

import pytest
import torch

import thoughtlens
from thoughtlens.errors import SAEError
from thoughtlens.sae import ActivationSource, TensorSource, TrainConfig, build_sae, save_sae, train_saes


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _saved(tmp_path, d_in=8, d_sae=16, hook="blocks.0.hook_resid_post"):
    sae = build_sae(architecture="topk", d_in=d_in, d_sae=d_sae, k=2, hook_name=hook)
    return save_sae(sae, tmp_path / "sae")


def test_checkpoint_for_another_width_or_hook(tmp_path):
    path = _saved(tmp_path)
    with pytest.raises(SAEError) as exc:
        thoughtlens.load_sae(path, d_in=32)
    assert "d_in=8" in _one_line(exc)
    with pytest.raises(SAEError) as exc:
        thoughtlens.load_sae(path, hook_name="blocks.5.hook_resid_post")
    assert "blocks.0.hook_resid_post" in _one_line(exc)
    # weights of another width under this cfg.json
    cfg = json.loads((path / "cfg.json").read_text())
    cfg["thoughtlens"]["d_sae"] = cfg["d_sae"] = 32
    (path / "cfg.json").write_text(json.dumps(cfg))
    with pytest.raises(SAEError) as exc:
        thoughtlens.load_sae(path)
    assert "another SAE width" in _one_line(exc)


def test_pickle_files_are_refused_not_unpickled(tmp_path):
    path = _saved(tmp_path)
    sentinel = tmp_path / "unpickled"

    class Boom:
        def __reduce__(self):  # would create the sentinel file if anything unpickled it
            return (open, (str(sentinel), "w"))

    torch.save({"W_enc": Boom()}, path / "sae_weights.safetensors")
    with pytest.raises(SAEError) as exc:
        thoughtlens.load_sae(path)
    assert "never unpickles" in _one_line(exc)
    (path / "sae_weights.safetensors").unlink()
    torch.save({"W_enc": torch.zeros(2)}, path / "sae.pt")
    with pytest.raises(SAEError) as exc:
        thoughtlens.load_sae(path)
    assert "safetensors" in _one_line(exc)
    with pytest.raises(SAEError):
        thoughtlens.load_sae(path / "sae.pt")
    assert not sentinel.exists()


def test_nans_in_activations(tiny_lm, tmp_path):
    x = torch.randn(100, 8)
    x[17, 3] = float("nan")
    with pytest.raises(SAEError) as exc:
        TensorSource(x, "h")
    assert "float32" in _one_line(exc)
    # NaNs coming out of the model: poison the residual stream with an outer hook.
    poison = [("blocks.0.hook_resid_post", lambda r, hook: r * float("nan"))]
    source = ActivationSource(
        tiny_lm,
        "blocks.0.hook_resid_post",
        ["some text " * 50] * 4,
        context_size=16,
        batch_size=8,
        buffer_size=16,
        cache_dir=tmp_path / "cache",
    )
    with tiny_lm.hooks(poison), pytest.raises(SAEError) as exc:
        next(iter(source))
    assert "NaN" in _one_line(exc)
    assert not (tmp_path / "cache").exists() and list(tmp_path.iterdir()) == []


def test_corpus_shorter_than_buffer_writes_no_cache(tiny_lm, tmp_path):
    source = ActivationSource(
        tiny_lm,
        "blocks.0.hook_resid_post",
        ["A short corpus of a few words."] * 3,
        context_size=8,
        batch_size=64,
        buffer_size=4096,
        cache_dir=tmp_path / "cache",
    )
    with pytest.raises(SAEError) as exc:
        list(source)
    assert "buffer_size=4096" in _one_line(exc)
    assert list(tmp_path.iterdir()) == []  # no cache, no temporary directory


def test_resume_refuses_a_checkpoint_for_another_sae(tmp_path):
    source = TensorSource(torch.randn(2048, 8), "h", batch_size=256)
    ckpt = tmp_path / "ckpt"
    train_saes(
        {"a": build_sae(architecture="topk", d_in=8, d_sae=16, k=2, hook_name="h")},
        source,
        TrainConfig(total_activations=512, checkpoint_dir=str(ckpt)),
    )
    before = (ckpt / "checkpoint.safetensors").read_bytes()
    with pytest.raises(SAEError) as exc:
        train_saes(
            {"a": build_sae(architecture="topk", d_in=8, d_sae=32, k=2, hook_name="h")},
            source,
            TrainConfig(total_activations=512, checkpoint_dir=str(ckpt)),
        )
    assert "d_sae=16" in _one_line(exc)
    assert (ckpt / "checkpoint.safetensors").read_bytes() == before


def test_unknown_architecture_and_bad_k():
    with pytest.raises(SAEError) as exc:
        build_sae(architecture="gated2", d_in=8, d_sae=16)
    assert "topk" in _one_line(exc)
    with pytest.raises(SAEError) as exc:
        build_sae(architecture="topk", d_in=8, d_sae=16, k=0)
    assert "k" in _one_line(exc)
