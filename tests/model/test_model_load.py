"""Loading: the bundled model, local directories, and one-line errors for everything else."""

from __future__ import annotations

import json
import time

import pytest
import torch

from thoughtlens import load
from thoughtlens.errors import ConfigError, ModelNotFoundError
from thoughtlens.model.load import default_dtype


def test_missing_local_path_says_to_check_the_path(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist: check the path"):
        load(tmp_path / "nope")


def test_missing_gguf_file_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"GGUF file .*missing.gguf does not exist"):
        load(tmp_path / "missing.gguf")


def test_unreachable_hub_id_says_how_to_get_the_model(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelNotFoundError, match=r"not reachable on the Hugging Face Hub.*huggingface-cli download"):
        load("no-such-org/no-such-model-xyz")


def test_unsupported_architecture_lists_the_supported_ones(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert", "architectures": ["BertModel"]}))
    with pytest.raises(ModelNotFoundError, match=r"bert model.*supported: gemma.*register_adapter"):
        load(tmp_path)


def test_error_messages_are_one_line(tmp_path):
    with pytest.raises(ModelNotFoundError) as info:
        load(tmp_path / "nope")
    assert "\n" not in str(info.value)


def test_unknown_dtype_names_the_choices():
    with pytest.raises(ConfigError, match="unknown dtype 'fp12'"):
        load(None, dtype="fp12")


def test_default_dtype_is_bf16_only_where_the_cpu_is_fast_at_it(monkeypatch):
    import importlib

    load_module = importlib.import_module("thoughtlens.model.load")

    monkeypatch.setattr(load_module, "_cpu_has_fast_bf16", lambda: True)
    assert default_dtype("cpu") == torch.bfloat16
    monkeypatch.setattr(load_module, "_cpu_has_fast_bf16", lambda: False)
    assert default_dtype("cpu") == torch.float32


@pytest.mark.slow
def test_local_directory_round_trip(tiny_lm_dir):
    m = load(tiny_lm_dir, dtype="float32")
    assert m.hf_model.config.model_type == "llama" and m.tokenizer is not None
    assert m.dtype == torch.float32 and m.adapter.name == "llama"


@pytest.mark.slow
def test_bundled_model_loads_from_the_cache_fast(smol_dir):
    t = time.perf_counter()
    m = load()
    seconds = time.perf_counter() - t
    assert m.cfg.n_layers == 30 and m.cfg.n_heads == 9 and m.cfg.n_kv_heads == 3
    assert m.hf_model is not None and m.tokenizer is not None
    assert seconds < 10  # "well under 2 s" on a quiet machine; generous for a loaded CI box
