"""Bad input to the diffing tools: one-line errors that name the fix."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.diff.corpus import read_corpus
from thoughtlens.diff.pair import load_pair
from thoughtlens.errors import ConfigError, DataError


def _tiny_dir(root, tokenizer, hidden: int, name: str) -> str:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
    )
    out = root / name
    LlamaForCausalLM(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_different_tokenizers(tmp_path, tiny_planted_dirs, smol_tokenizer):
    import copy

    other = copy.deepcopy(smol_tokenizer)
    other.add_tokens(["<zorp>"])
    d = _tiny_dir(tmp_path, other, 64, "other_tok")
    with pytest.raises(ConfigError) as exc:
        load_pair(tiny_planted_dirs[0], d)
    assert "different tokenizers" in _one_line(exc)


def test_different_widths(tmp_path, tiny_planted_dirs, smol_tokenizer):
    d = _tiny_dir(tmp_path, smol_tokenizer, 32, "narrow")
    with pytest.raises(ConfigError) as exc:
        load_pair(tiny_planted_dirs[0], d)
    assert "d_model (64 vs 32)" in _one_line(exc)


def test_missing_and_empty_corpus(tmp_path):
    with pytest.raises(DataError) as exc:
        read_corpus(tmp_path / "nope.txt")
    assert "not found" in _one_line(exc)
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(DataError) as exc:
        read_corpus(tmp_path / "empty.txt")
    assert "no text" in _one_line(exc)


def test_cli_errors_are_one_red_line(tmp_path, tiny_planted_dirs):
    base, ft = tiny_planted_dirs
    runner = CliRunner()
    res = runner.invoke(app, ["diff", "kl", "--base", base, "--finetuned", ft, "--corpus", str(tmp_path / "nope.txt")])
    assert res.exit_code == 1 and "error:" in res.output and "not found" in res.output
    res = runner.invoke(app, ["diff", "weights", "--base", base])
    assert res.exit_code == 1 and "pass both --base and --finetuned" in res.output
    res = runner.invoke(app, ["diff", "lens", "--base", base, "--finetuned", ft, "--layers", "1,x"])
    assert res.exit_code == 1 and "--layers" in res.output
