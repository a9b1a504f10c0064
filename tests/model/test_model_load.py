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
    """The probe with both answers: read from /proc/cpuinfo (here replaced), then overridden by the variable."""
    import importlib

    load_module = importlib.import_module("thoughtlens.model.load")
    monkeypatch.delenv(load_module.CPU_BF16_ENV, raising=False)
    for has_units, want in ((True, torch.bfloat16), (False, torch.float32)):
        monkeypatch.setattr(load_module, "_cpuinfo_has_bf16_units", lambda has_units=has_units: has_units)
        assert default_dtype("cpu") == want
        # the variable wins over what the CPU reports, in both directions
        monkeypatch.setenv(load_module.CPU_BF16_ENV, "0" if has_units else "1")
        assert default_dtype("cpu") == (torch.float32 if has_units else torch.bfloat16)
        monkeypatch.delenv(load_module.CPU_BF16_ENV)


def test_cpuinfo_probe_reads_the_flags(monkeypatch, tmp_path):
    """The flag parser itself, on two cpuinfo texts: an AVX2-only EPYC and a Xeon with AMX."""
    import importlib

    load_module = importlib.import_module("thoughtlens.model.load")
    real_path = load_module.Path
    for flags, want in (("fpu sse avx avx2 fma f16c", False), ("avx512f avx512_bf16 amx_tile amx_bf16", True)):
        info = tmp_path / f"cpuinfo-{want}"
        info.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        monkeypatch.setattr(load_module, "Path", lambda p, info=info: info if p == "/proc/cpuinfo" else real_path(p))
        load_module._cpuinfo_has_bf16_units.cache_clear()
        try:
            assert load_module._cpuinfo_has_bf16_units() is want
        finally:
            load_module._cpuinfo_has_bf16_units.cache_clear()


def test_bad_cpu_bf16_variable_names_the_fix(monkeypatch):
    import importlib

    load_module = importlib.import_module("thoughtlens.model.load")
    monkeypatch.setenv(load_module.CPU_BF16_ENV, "yes")
    with pytest.raises(ConfigError, match="set it to 1") as info:
        default_dtype("cpu")
    assert "\n" not in str(info.value)


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
