"""One runtime builder (thoughtlens.pipeline.runtime) behind every command that samples: `anchors run` and the
three `branches` commands honour --dtype, --device and --api-model alike."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.cli import app
from thoughtlens.errors import ConfigError
from thoughtlens.pipeline import runtime
from thoughtlens.pipeline.runtime import RuntimeOptions, build_runtime
from thoughtlens.sample.base import Completion
from thoughtlens.store.run_store import RunStore

PROMPT = "Question: what is 3 + 4?\nAnswer: "
TRACE = "First we add three and four. The total is seven. So the answer is \\boxed{7}."


class _Echo:
    """A sampler that answers every prefix with the right answer: enough to write a small anchors run."""

    name = "echo"

    def sample(self, requests, params, on_completion=None):
        out = []
        for p, req in enumerate(requests):
            for j in req.sample_indices:
                c = Completion(p, j, " So the answer is \\boxed{7}.", 5, "stop")
                out.append(c)
                if on_completion:
                    on_completion(c)
        return out


@pytest.fixture(scope="module")
def anchors_store(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("runtime") / "a.sqlite"
    with RunStore(path) as store:
        job = AnchorsRun(
            _Echo(),
            store,
            AnchorsConfig(n_rollouts=2, label_categories=False, forced=False, counterfactual_matrix=False),
        )
        job.run([Problem("p0", "What is 3 + 4?", PROMPT, "7", base_completion=TRACE)])
    return str(path)


def _commands(store: str, tmp_path) -> dict[str, list[str]]:
    return {
        "anchors run": [
            "anchors",
            "run",
            "--problem",
            "What is 3 + 4?",
            "--answer",
            "7",
            "-n",
            "1",
            "--store",
            str(tmp_path / "run.sqlite"),
        ],
        "branches resilience": ["branches", "resilience", store, "--sentence", "0", "--trials", "1"],
        "branches intervene": ["branches", "intervene", store, "--sentence", "0", "--target", "doubt"],
        "branches transplant": ["branches", "transplant", "--store", str(tmp_path / "t.sqlite"), "--limit", "1"],
    }


COMMANDS = ["anchors run", "branches resilience", "branches intervene", "branches transplant"]


class _Stop(ConfigError):
    pass


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_dtype_and_device_reach_the_loader(command, anchors_store, tmp_path, monkeypatch):
    seen = {}

    def fake_load(name, **kw):
        seen.update(kw, name=name)
        raise _Stop("stopped at the model load")

    monkeypatch.setattr(runtime, "load", fake_load)
    args = _commands(anchors_store, tmp_path)[command] + ["--dtype", "bfloat16", "--device", "cpu", "--model", "m-x"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "stopped at the model load" in r.output, r.output
    assert seen == {"name": "m-x", "dtype": "bfloat16", "device": "cpu"}


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_api_model_reaches_the_openai_sampler(command, anchors_store, tmp_path, monkeypatch, tiny_lm_dir):
    seen = {}

    def fake_make_sampler(backend, **kw):
        seen.update(kw, backend=backend)
        raise _Stop("stopped at the sampler")

    monkeypatch.setattr(runtime, "make_sampler", fake_make_sampler)
    args = _commands(anchors_store, tmp_path)[command] + [
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
        "--api-model",
        "served-x",
        "--api-key-env",
        "MY_KEY",
        "--model",
        tiny_lm_dir,
    ]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 1 and "stopped at the sampler" in r.output, r.output
    assert seen["backend"] == "openai" and seen["api_model"] == "served-x" and seen["api_key_env"] == "MY_KEY"
    assert seen["base_url"] == ["http://127.0.0.1:9/v1"]


@pytest.mark.slow
@pytest.mark.parametrize("command", COMMANDS)
def test_a_device_this_machine_lacks_is_refused_by_every_command(command, anchors_store, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("checks the error on a machine without CUDA")
    r = CliRunner().invoke(app, _commands(anchors_store, tmp_path)[command] + ["--device", "cuda"])
    assert r.exit_code == 1, r.output
    assert "cuda" in r.output.lower() and "Traceback" not in r.output


@pytest.mark.slow
def test_build_runtime_loads_in_the_dtype_asked(tiny_lm_dir):
    for name, want in (("float32", torch.float32), ("bf16", torch.bfloat16)):
        rt = build_runtime(RuntimeOptions(model=tiny_lm_dir, dtype=name))
        assert rt.model.dtype == want and rt.sampler.model is rt.model
        assert rt.tokenizer is rt.model.tokenizer


def test_openai_runtime_loads_only_the_tokenizer_and_names_the_served_model(tiny_lm_dir):
    rt = build_runtime(
        RuntimeOptions(backend="openai", model=tiny_lm_dir, base_url="http://127.0.0.1:9/v1", api_model="served-x")
    )
    assert not hasattr(rt.model, "hf_model")  # a TokenizerOnly: nothing to run locally
    assert rt.sampler.client.model == "served-x" and rt.sampler.tokenizer is rt.model.tokenizer


def test_bad_dtype_is_refused_before_anything_loads():
    with pytest.raises(ConfigError, match="unknown dtype 'fp12'"):
        RuntimeOptions(dtype="fp12")
