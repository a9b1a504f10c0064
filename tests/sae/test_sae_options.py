"""SAE options do what they say: `sae eval --tokens N` evaluates N tokens, a small max_tokens trains with
the default buffer, and every output file gets the same mode."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest
import torch
import torch.nn.functional as F
from test_sae_splice import identity_sae
from typer.testing import CliRunner

from thoughtlens.cli import app
from thoughtlens.errors import SAEError
from thoughtlens.sae import ActivationSource, TrainConfig, build_sae, save_sae, train_saes
from thoughtlens.sae.activations import token_windows
from thoughtlens.sae.evaluate import evaluate_saes

TEXTS = [f"Problem {i}: Tom has {i} apples and buys {i + 3} more, so he has {2 * i + 3} apples." for i in range(40)]
HOOK = "blocks.0.hook_resid_post"


@pytest.mark.parametrize("max_tokens", [50, 60, 1])
def test_evaluation_reads_exactly_max_tokens(tiny_lm, max_tokens):
    events = []
    m = evaluate_saes(
        tiny_lm,
        {"id": identity_sae(tiny_lm.cfg.d_model, HOOK)},
        TEXTS,
        context_size=16,
        batch_size=4,
        max_tokens=max_tokens,
        on_progress=events.append,
    )["id"]
    assert m.n_tokens == max_tokens
    assert (events[-1].completed, events[-1].total) == (max_tokens, max_tokens)
    # CE over exactly the first max_tokens predictions, row-major over the windows (BOS not predicted from)
    windows = torch.tensor(list(token_windows(tiny_lm.tokenizer, TEXTS, 16))[: -(-max_tokens // 15)])
    with torch.no_grad():
        logits = tiny_lm(windows)
    ce = F.cross_entropy(logits[:, :-1].flatten(0, 1), windows[:, 1:].flatten(), reduction="none")[:max_tokens]
    assert m.ce_clean == pytest.approx(float(ce.mean()), rel=1e-5)
    assert m.l0 == pytest.approx(tiny_lm.cfg.d_model)  # the identity SAE: every latent pair, one of each fires


def test_evaluation_refuses_no_tokens(tiny_lm):
    with pytest.raises(SAEError, match="max_tokens must be at least 1"):
        evaluate_saes(tiny_lm, {"id": identity_sae(tiny_lm.cfg.d_model, HOOK)}, TEXTS, max_tokens=0)


def test_sae_eval_cli_honours_tokens(tiny_lm, tiny_lm_dir, tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n\n".join(TEXTS * 3))
    sae_dir = save_sae(identity_sae(tiny_lm.cfg.d_model, HOOK), tmp_path / "sae")
    res = CliRunner().invoke(
        app,
        [
            "sae",
            "eval",
            str(sae_dir),
            "--model",
            tiny_lm_dir,
            "--corpus",
            str(corpus),
            "--tokens",
            "300",
            "--last-docs",
            "120",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "(300 tokens)" in res.output
    counts = [int(n) for n in re.findall(r"sae eval: (\d+)/300", res.output)]
    assert counts and max(counts) == 300, res.output  # progress ends at 300/300, never past it


def test_a_small_max_tokens_trains_with_the_default_buffer(tiny_lm, tmp_path):
    source = ActivationSource(
        tiny_lm,
        HOOK,
        TEXTS,
        context_size=16,
        model_batch_size=4,
        batch_size=32,
        max_tokens=300,
        cache_dir=tmp_path / "cache",
    )  # buffer_size left at its default
    assert source.buffer_size == 300
    sae = build_sae(architecture="topk", d_in=tiny_lm.cfg.d_model, d_sae=64, k=4, hook_name=HOOK)
    result = train_saes({"topk": sae}, source, TrainConfig(total_activations=600, n_init_activations=256))
    assert result.steps == -(-600 // 32)
    meta = json.loads((tmp_path / "cache" / "meta.json").read_text())
    assert meta["n_activations"] == 300
    # a later run on the complete cache, again with the default buffer
    again = ActivationSource(
        None, HOOK, None, context_size=16, batch_size=32, max_tokens=300, cache_dir=tmp_path / "cache"
    )
    assert sum(len(b) for b in again.batches()) == (300 // 32) * 32


def test_max_tokens_below_two_batches_is_one_line_naming_the_fix(tiny_lm):
    with pytest.raises(SAEError) as exc:
        ActivationSource(tiny_lm, HOOK, TEXTS, batch_size=64, max_tokens=100)
    msg = str(exc.value)
    assert "\n" not in msg and "max_tokens (100)" in msg and "raise max_tokens or lower batch_size" in msg


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_every_output_file_has_one_mode(tiny_lm, tmp_path):
    old = os.umask(0o022)
    try:
        cfg_json = tmp_path / "plain.json"
        cfg_json.write_text("{}")  # what any other output of the process gets
        file_mode = _mode(cfg_json)
        (tmp_path / "plain").mkdir()
        dir_mode = _mode(tmp_path / "plain")
        sae = build_sae(architecture="topk", d_in=tiny_lm.cfg.d_model, d_sae=64, k=4, hook_name=HOOK)
        out = save_sae(sae, tmp_path / "sae")
        source = ActivationSource(
            tiny_lm, HOOK, TEXTS, context_size=16, batch_size=32, max_tokens=300, cache_dir=tmp_path / "cache"
        )
        train_saes(
            {"topk": sae},
            source,
            TrainConfig(total_activations=64, n_init_activations=64, checkpoint_dir=str(tmp_path / "ckpt")),
        )
    finally:
        os.umask(old)
    assert (file_mode, dir_mode) == (0o644, 0o755)
    files = [
        out / "sae_weights.safetensors",
        out / "cfg.json",
        tmp_path / "ckpt" / "checkpoint.safetensors",
        tmp_path / "cache" / "meta.json",
        *sorted((tmp_path / "cache").glob("shard_*.safetensors")),
    ]
    assert len(files) >= 5
    assert {str(f.relative_to(tmp_path)): oct(_mode(f)) for f in files} == {
        str(f.relative_to(tmp_path)): oct(file_mode) for f in files
    }
    assert {oct(_mode(d)) for d in (out, tmp_path / "cache", tmp_path / "ckpt")} == {oct(dir_mode)}
