"""load(device=, device_map=, **hf_kwargs) and the registry's checks: one-line errors that name the fix."""

from __future__ import annotations

import numerics
import pytest
import torch

from thoughtlens import load
from thoughtlens.errors import BackendError, ModelNotFoundError
from thoughtlens.sample.registry import make_sampler


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_without_a_gpu_is_a_one_line_error(tiny_lm_dir):
    with pytest.raises(ModelNotFoundError, match="no CUDA GPU.*--device cpu"):
        load(tiny_lm_dir, device="cuda")


def test_bad_device_and_conflicting_placement(tiny_lm_dir):
    with pytest.raises(ModelNotFoundError, match="unknown device 'gpu0'"):
        load(tiny_lm_dir, device="gpu0")
    with pytest.raises(ModelNotFoundError, match="either device=.* or device_map=.*not both"):
        load(tiny_lm_dir, device="cuda:0", device_map="auto")


def test_hf_kwargs_and_device_map_reach_from_pretrained(tiny_lm_dir, monkeypatch):
    import transformers
    from transformers import AutoModelForCausalLM

    seen = []
    real = transformers.AutoModelForCausalLM.from_pretrained
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **kw: seen.append(kw) or real(*a, **kw)
    )
    load(tiny_lm_dir, dtype="float32", use_safetensors=True)
    assert seen[-1]["use_safetensors"] is True and seen[-1]["dtype"] == torch.float32
    monkeypatch.undo()
    mapped = load(tiny_lm_dir, device=None, device_map="cpu", dtype="float32")
    assert {p.device.type for p in mapped.hf_model.parameters()} == {"cpu"}
    # Same weights as plain transformers, so the placement path changes nothing but float32 rounding through
    # the layers (thoughtlens routes attention through its own function).
    ref = AutoModelForCausalLM.from_pretrained(tiny_lm_dir, dtype=torch.float32)
    ids = torch.tensor([[1, 5, 9, 200]])
    with torch.no_grad():
        got, want = mapped.hf_model(ids).logits, ref(ids).logits
    assert got.dtype == want.dtype == torch.float32
    numerics.assert_close(got, want, dtype=torch.float32, depth=ref.config.num_hidden_layers)


def test_registry_errors():
    with pytest.raises(BackendError, match="unknown backend 'tgi'.*hf, openai, vllm"):
        make_sampler("tgi")
    with pytest.raises(BackendError, match="needs --base-url"):
        make_sampler("openai")
    with pytest.raises(BackendError, match="needs a loaded model"):
        make_sampler("hf", model="some/name")
