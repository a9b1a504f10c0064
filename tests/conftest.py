"""Shared fixtures. Tests read ../shared/data in place (never copied) and skip with a clear message where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from servers import (
    _VLLM_START_TIMEOUT_S,
    VLLM_SEED,
    LlamaServer,
    _free_port,
    _stop,  # noqa: F401
    _wait_for_server,
    require_llama_cpp,
    vllm_env,
    vllm_python,
)
from skip_gate import (
    pytest_sessionfinish,  # noqa: F401
)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("THOUGHTLENS_SHARED_DATA", REPO.parent / "shared" / "data"))
PUBLISHED = SHARED_DATA / "thought-anchors" / "deepseek-r1-distill-qwen-14b"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA} (set THOUGHTLENS_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def published_dir(shared_data: Path) -> Path:
    if not PUBLISHED.is_dir():
        pytest.skip(f"published thought-anchors traces not found at {PUBLISHED}")
    return PUBLISHED


@pytest.fixture(scope="session")
def published_problems(published_dir: Path) -> list[Path]:
    """The 20 published problem directories, sorted (correct first, then incorrect)."""
    return sorted(published_dir.glob("*/problem_*"))


# ---- llama.cpp server (helpers in tests/servers.py) ---------------------------------------------


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """A llama-cpp-python OpenAI-compatible server on 127.0.0.1 serving the bundled SmolLM2 GGUF.
    Yields its base URL (http://127.0.0.1:PORT/v1); stopped at the end of the session."""
    require_llama_cpp()
    server = LlamaServer(tmp_path_factory.mktemp("llama_server"))
    try:
        yield server.url
    finally:
        server.stop()


# ---- vLLM server (helpers in tests/servers.py) ---------------------------------------------------


@pytest.fixture(scope="module")
def vllm_server(smol_dir, tmp_path_factory):
    """`vllm serve` (module entry point) on 127.0.0.1 for the bundled model's converted directory, in fp32,
    eager, seeded: seeded requests then reproduce bit for bit. Yields its base URL; stopped (with its engine
    processes) after the module, and never allowed more than _VLLM_START_TIMEOUT_S to come up."""
    import subprocess

    py = vllm_python()
    if os.environ.get("THOUGHTLENS_VLLM_URL"):  # a server you started yourself (same flags), for quick iterations
        yield os.environ["THOUGHTLENS_VLLM_URL"]
        return
    port = _free_port()
    url = f"http://127.0.0.1:{port}/v1"
    log_path = tmp_path_factory.mktemp("vllm_server") / "server.log"
    cmd = [str(py), "-m", "vllm.entrypoints.openai.api_server", "--model", smol_dir, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
           "--seed", str(VLLM_SEED)]  # fmt: skip
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=vllm_env(), start_new_session=True)
    try:
        _wait_for_server(url, proc, log_path, _VLLM_START_TIMEOUT_S, "vLLM")
        yield url
    finally:
        _stop(proc, group=True)


@pytest.fixture(scope="session")
def smol_dir() -> str:
    """The bundled SmolLM2-135M-Instruct as a safetensors directory (converted once, then cached)."""
    from thoughtlens.model.load import BUNDLED_NAME, bundled_gguf_path, converted_gguf

    return converted_gguf(bundled_gguf_path(), BUNDLED_NAME)


@pytest.fixture(scope="session")
def smol_tokenizer(smol_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smol_dir)


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, smol_tokenizer) -> str:
    """A tiny random Llama with SmolLM2's tokenizer, saved like a real model directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(smol_tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        eos_token_id=smol_tokenizer.eos_token_id,
        bos_token_id=smol_tokenizer.bos_token_id,
    )
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny_lm")
    model.save_pretrained(out)
    smol_tokenizer.save_pretrained(out)
    return str(out)


@pytest.fixture(scope="session")
def tiny_lm(tiny_lm_dir):
    """HookedModel over the tiny random Llama, fp32."""
    import torch

    from thoughtlens import load

    return load(tiny_lm_dir, dtype=torch.float32)


@pytest.fixture(autouse=True)
def _sigint_handler_is_left_alone():
    """A test that leaves SIGINT ignored (or handled) in the pytest process breaks later ones: a child process
    inherits an ignored SIGINT (tests/badinput/test_badinput_sigint.py then sees a run that cannot be interrupted),
    and the store's Ctrl-C deferral only takes over Python's default handler. Name the test that did it."""
    import signal

    before = signal.getsignal(signal.SIGINT)
    yield
    after = signal.getsignal(signal.SIGINT)
    if after is not before:
        signal.signal(signal.SIGINT, before)  # restore, so one culprit does not fail every later test
        pytest.fail(f"this test left the SIGINT handler at {after!r} (was {before!r}): restore it in a finally")


# ---- per-test timeouts (pytest-timeout; the default is in pyproject.toml) -----------------------------------

# Tests that start a real server wait for it to come up (vLLM: up to _VLLM_START_TIMEOUT_S on a busy machine)
# inside their first test's setup: they get that much on top of the default.
SERVER_TIMEOUT_S = 300 + int(_VLLM_START_TIMEOUT_S)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("server") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SERVER_TIMEOUT_S))
