"""Save and load SAEs in SAELens's on-disk format: a directory with `cfg.json` and
`sae_weights.safetensors` (SAELens `SAE.save_model` / `load_from_disk`, `sae_lens/saes/sae.py`).

    sae = thoughtlens.load_sae("path/to/dir")            # SAELens 6 or older cfg.json, or ours
    thoughtlens.sae.save_sae(sae, "out/dir")             # SAELens opens it with SAE.load_from_disk

Weights are read with safetensors only: a pickle (`.pt`, `.pth`, `.pkl`, a torch.save zip) is refused,
never unpickled. cfg.json written here is SAELens-6 shaped (top-level d_in, d_sae, dtype, architecture,
architecture fields such as k or d_out; hook and model names under `metadata`); the full thoughtlens
config rides along under the key `thoughtlens`, which SAELens ignores, so a round trip is exact.
Older SAELens configs (`hook_point`, `activation_fn_str`, `activation_fn_kwargs.k`) are understood too.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from thoughtlens.errors import SAEError
from thoughtlens.files import output_modes
from thoughtlens.sae.base import ARCHITECTURES, SAE, SAEConfig, as_dtype, build_sae
from thoughtlens.version import __version__

CFG_FILENAME = "cfg.json"
WEIGHTS_FILENAME = "sae_weights.safetensors"
# The oldest SAELens version whose config layout we write; SAELens reads configs below 6.0 with its
# legacy converter, so our files must claim at least this.
SAELENS_FORMAT_VERSION = "6.0.0"
_PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt"}


def save_sae(sae: SAE, path: str | os.PathLike) -> Path:
    """Write `sae` to directory `path` (created; replaced whole if it exists, never left half-written).

    BatchTopK and Matryoshka SAEs are written as the JumpReLU SAE they are at inference, as SAELens does.
    Returns the directory.
    """
    path = Path(path)
    cfg, state = sae.inference_export()
    state = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
    try:
        save_file(state, str(tmp / WEIGHTS_FILENAME))
        (tmp / CFG_FILENAME).write_text(json.dumps(config_to_saelens(cfg), indent=2))
        output_modes(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def config_to_saelens(cfg: SAEConfig) -> dict:
    """SAELens-6 cfg.json content for `cfg` (fields SAELens does not know go under 'thoughtlens')."""
    out = {
        "architecture": cfg.architecture,
        "d_in": cfg.d_in,
        "d_sae": cfg.d_sae,
        "dtype": str(as_dtype(cfg.dtype)).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": cfg.apply_b_dec_to_input,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": SAELENS_FORMAT_VERSION,
            "sae_lens_training_version": SAELENS_FORMAT_VERSION,
            "model_name": cfg.model_name,
            "hook_name": cfg.hook_name,
            "hook_head_index": None,
            "prepend_bos": True,
            "trained_with": f"thoughtlens {__version__}",
            **cfg.metadata,
        },
    }
    if cfg.architecture == "topk":
        out["k"] = int(cfg.k)
        out["rescale_acts_by_decoder_norm"] = cfg.rescale_acts_by_decoder_norm
    if cfg.architecture == "transcoder":
        out["d_out"] = cfg.d_output
        out["metadata"]["hook_name_out"] = cfg.hook_name_out
    out["thoughtlens"] = {k: v for k, v in vars(cfg).items()}
    return out


def config_from_saelens(raw: dict, where: str = "cfg.json") -> tuple[SAEConfig, dict]:
    """(SAEConfig, extras) from a SAELens (any version) or thoughtlens cfg.json dict. `extras` holds
    what loading must still apply: finetuning_scaling_factor, reshape_activations."""
    if "thoughtlens" in raw:  # ours: exact
        fields = dict(raw["thoughtlens"])
        return SAEConfig(**fields), {"reshape_activations": raw.get("reshape_activations", "none")}
    meta = dict(raw.get("metadata") or {})
    # SAELens < 6 kept these at top level, some under other names (loading/pretrained_sae_loaders.py
    # `handle_pre_6_0_config`).
    hook_name = meta.get("hook_name") or raw.get("hook_name") or raw.get("hook_point") or ""
    model_name = meta.get("model_name") or raw.get("model_name") or ""
    arch = raw.get("architecture", "standard")
    act_fn = raw.get("activation_fn") or raw.get("activation_fn_str") or "relu"
    k = raw.get("k")
    if arch == "standard" and act_fn == "topk":
        arch = "topk"
        k = (raw.get("activation_fn_kwargs") or {}).get("k", k)
    if arch not in ARCHITECTURES:
        raise SAEError(
            f"{where}: architecture {arch!r} is not supported; supported: {', '.join(sorted(ARCHITECTURES))}"
        )
    norm = raw.get("normalize_activations", "none")
    if norm in (False, None):
        norm = "none"
    if norm != "none":
        raise SAEError(
            f"{where}: normalize_activations={norm!r} is not supported; fold the scaling into the weights "
            "first (SAELens: sae.fold_activation_norm_scaling_factor(...); sae.save_model(...))"
        )
    for key in ("d_in", "d_sae"):
        if not isinstance(raw.get(key), int):
            raise SAEError(f"{where}: missing integer {key!r}; is this an SAE config?")
    apply_b_dec = raw.get("apply_b_dec_to_input", arch != "transcoder")
    cfg = SAEConfig(
        architecture=arch,
        d_in=raw["d_in"],
        d_sae=raw["d_sae"],
        d_out=raw.get("d_out") if arch == "transcoder" else None,
        hook_name=hook_name,
        hook_name_out=meta.get("hook_name_out") or raw.get("hook_name_out"),
        model_name=model_name,
        dtype=str(raw.get("dtype", "float32")).removeprefix("torch."),
        apply_b_dec_to_input=bool(apply_b_dec),
        k=k,
        rescale_acts_by_decoder_norm=bool(raw.get("rescale_acts_by_decoder_norm", False)),
        metadata={k2: v for k2, v in meta.items() if isinstance(v, (str, int, float, bool, type(None)))},
    )
    extras = {
        "finetuning_scaling_factor": bool(raw.get("finetuning_scaling_factor", False)),
        "reshape_activations": raw.get("reshape_activations", "none"),
    }
    return cfg, extras


def _check_not_pickle(path: Path) -> None:
    with open(path, "rb") as f:
        head = f.read(9)
    # A safetensors file starts with an 8-byte little-endian header length, then '{'.
    if path.suffix.lower() in _PICKLE_SUFFIXES or head[:2] == b"PK" or head[:1] == b"\x80" or head[8:9] != b"{":
        raise SAEError(
            f"{path} is not a safetensors file (a pickle or torch.save checkpoint?); thoughtlens never "
            "unpickles: convert it with safetensors.torch.save_file(state_dict, 'sae_weights.safetensors')"
        )


def _resolve(path: Path) -> tuple[Path, Path]:
    """(cfg.json, weights) for a directory, a weights file or a cfg.json path."""
    if path.is_dir():
        cfg_path, weights = path / CFG_FILENAME, path / WEIGHTS_FILENAME
        if not weights.exists():
            others = sorted(p.name for p in path.iterdir() if p.suffix.lower() in _PICKLE_SUFFIXES)
            if others:
                _check_not_pickle(path / others[0])
    elif path.name == CFG_FILENAME:
        cfg_path, weights = path, path.parent / WEIGHTS_FILENAME
    else:
        cfg_path, weights = path.parent / CFG_FILENAME, path
    if not path.exists():
        raise SAEError(f"no SAE at {path}: pass a directory holding {CFG_FILENAME} and {WEIGHTS_FILENAME}")
    if weights.exists():
        _check_not_pickle(weights)
    for p in (cfg_path, weights):
        if not p.is_file():
            raise SAEError(
                f"{p} is missing: an SAE directory holds {CFG_FILENAME} and {WEIGHTS_FILENAME} (SAELens's format)"
            )
    return cfg_path, weights


def load_sae(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
    hook_name: str | None = None,
    d_in: int | None = None,
) -> SAE:
    """Load an SAE saved by thoughtlens or SAELens (directory with cfg.json + sae_weights.safetensors).

    hook_name / d_in: when given, the checkpoint must have been trained for this hook and width
    (raises SAEError otherwise). dtype: cast (default: the cfg's). The SAE is in eval mode.
    """
    path = Path(path)
    cfg_path, weights = _resolve(path)
    try:
        raw = json.loads(cfg_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SAEError(f"{cfg_path} is not valid JSON ({exc.__class__.__name__}): re-save the SAE") from None
    cfg, extras = config_from_saelens(raw, str(cfg_path))
    if dtype is not None:
        cfg = cfg.replace(dtype=str(as_dtype(dtype)).removeprefix("torch."))
    if hook_name is not None and cfg.hook_name and cfg.hook_name != hook_name:
        raise SAEError(
            f"{path} was trained on hook {cfg.hook_name!r}, not {hook_name!r}: "
            f"pick the SAE for that hook or pass hook_name={cfg.hook_name!r}"
        )
    if d_in is not None and cfg.d_in != d_in:
        raise SAEError(f"{path} takes d_in={cfg.d_in} activations, not {d_in}: it belongs to another model or hook")
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types
        raise SAEError(f"{weights} is not a readable safetensors file ({exc}): re-download or re-save it") from None
    state = _convert_state(state, cfg, extras, weights)
    sae = build_sae(cfg)
    _check_state(sae, state, weights)
    sae.load_state_dict(
        {k: v.to(sae.W_enc.dtype) if v.is_floating_point() and k != "topk_threshold" else v for k, v in state.items()}
    )
    sae.reshape_activations = extras.get("reshape_activations", "none")
    return sae.to(device).eval()


def _convert_state(state: dict, cfg: SAEConfig, extras: dict, where: Path) -> dict:
    """Older SAELens weight layouts -> the current one."""
    if "log_threshold" in state:  # SAELens < 6 JumpReLU
        state["threshold"] = state.pop("log_threshold").exp()
    scale = state.pop("scaling_factor", None)
    if scale is None:
        scale = state.pop("finetuning_scaling_factor", None)
    if scale is not None and not torch.allclose(scale, torch.ones_like(scale)):
        # SAELens multiplies latents by it before decoding: fold it into the decoder rows.
        state["W_dec"] = state["W_dec"] * scale[:, None].to(state["W_dec"].dtype)
    return state


def _check_state(sae: SAE, state: dict, where: Path) -> None:
    expected = {k: tuple(v.shape) for k, v in sae.state_dict().items()}
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise SAEError(
            f"{where} does not match its cfg.json ({sae.cfg.architecture}): missing {missing or 'nothing'}, "
            f"unexpected {extra or 'nothing'}; the weights belong to another architecture"
        )
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise SAEError(
                f"{where}: {k} is {list(state[k].shape)} but cfg.json says {list(shape)} "
                f"(d_in={sae.cfg.d_in}, d_sae={sae.cfg.d_sae}); the weights belong to another SAE width"
            )
