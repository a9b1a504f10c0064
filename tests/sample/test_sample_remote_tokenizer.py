"""Remote backends load only a tokenizer: prompts match the full model's, and a whole anchors run against a
server never reads a weight (weight loaders are booby-trapped in a subprocess, whose peak RSS is reported)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from thoughtlens.errors import ModelNotFoundError
from thoughtlens.model.load import load_tokenizer, tokenizer_identity

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


def test_tokenizer_only_builds_the_same_prompt_as_the_tokenizer_itself(smol_dir, smol_tokenizer):
    tok = load_tokenizer(smol_dir)
    message = "What is 2 + 3?"
    expected = smol_tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )
    assert tok.apply_chat_template(message) == expected
    assert tok.name == smol_dir and tokenizer_identity(tok.tokenizer) == tokenizer_identity(smol_tokenizer)


def test_tokenizer_identity_tells_tokenizers_apart(smol_tokenizer, tiny_lm_dir):
    from transformers import AutoTokenizer

    same = AutoTokenizer.from_pretrained(tiny_lm_dir)  # the same files, saved elsewhere
    assert tokenizer_identity(same) == tokenizer_identity(smol_tokenizer)
    same.chat_template = "{{ messages[0]['content'] }}"
    assert tokenizer_identity(same) != tokenizer_identity(smol_tokenizer)
    same.add_tokens(["<brand-new-token>"])
    assert tokenizer_identity(same) != tokenizer_identity(smol_tokenizer)


def test_bad_tokenizer_paths_are_one_line_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        load_tokenizer(tmp_path / "missing.gguf")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelNotFoundError, match="cannot load the tokenizer of .*tokenizer.json"):
        load_tokenizer(tmp_path / "empty")


_NO_WEIGHTS = textwrap.dedent("""
    import json, sys
    sys.path.insert(0, sys.argv[1])

    # Booby-trap every way transformers / safetensors / torch read weights: the run must not touch them.
    import safetensors.torch, torch, transformers
    def trap(*a, **k):
        raise AssertionError("model weights were loaded")
    transformers.AutoModelForCausalLM.from_pretrained = trap
    transformers.PreTrainedModel.from_pretrained = classmethod(trap)
    safetensors.torch.load_file = trap
    safetensors.safe_open = trap
    torch.load = trap

    from fake_openai_server import FakeOpenAIServer
    from thoughtlens.anchors.config import AnchorsConfig, Problem
    from thoughtlens.anchors.importance.black_box import AnchorsRun
    from thoughtlens.model.load import load_tokenizer
    from thoughtlens.sample.registry import make_sampler
    from thoughtlens.store.run_store import RunStore

    AnchorsRun._metrics = lambda self, problem, trace: []  # the embedding model is not the served model
    server = FakeOpenAIServer("served-model")
    tok = load_tokenizer(None)  # the bundled model's tokenizer, no weights
    sampler = make_sampler("openai", base_url=server.url, model=tok)
    prompt = tok.apply_chat_template("What is 2 + 3?")
    trace = "Add them. Two plus three is five. So the answer is \\\\boxed{5}."
    config = AnchorsConfig(n_rollouts=2, max_new_tokens=8, label_categories=False, counterfactual_matrix=False)
    job = AnchorsRun(sampler, RunStore(sys.argv[2]), config)  # MiniLM, as _metrics
    job.run([Problem("p0", "What is 2 + 3?", prompt, "5", base_completion=trace)])
    server.stop()
    # VmHWM, not ru_maxrss: across exec Linux keeps the parent's high-water mark in ru_maxrss, so a subprocess of
    # a pytest that has grown to 3 GB would report 3 GB (as CI once did).
    status = open("/proc/self/status").read()
    peak_mb = int(status.split("VmHWM:")[1].split()[0]) / 1024
    print("RESULT " + json.dumps({"peak_rss_mb": peak_mb, "model": job.config.model,
                                  "tok_ranges": job.store.trace(job.run_id, "p0")["sentences"][0]["tok_start"]}))
""")


@pytest.mark.slow
def test_remote_run_never_loads_weights(tmp_path, smol_dir):
    script = tmp_path / "no_weights.py"
    script.write_text(_NO_WEIGHTS)
    proc = subprocess.run(
        [sys.executable, str(script), str(HERE), str(tmp_path / "s.sqlite")],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1][len("RESULT ") :])
    print(f"peak RSS of an openai-backend anchors run with tokenizer-only loading: {result['peak_rss_mb']:.0f} MB")
    assert result["model"] == "served-model"  # the served model's id, not the local tokenizer's name
    assert result["tok_ranges"] is not None  # the tokenizer gave sentence token ranges
    # The fp32 weights alone are 540 MB (135M x 4 bytes); torch + transformers + pandas take ~400-500 MB.
    assert result["peak_rss_mb"] < 1000
