"""A small seeded trainer for tiny models on CPU, with log-spaced, resumable safetensors checkpoints.

    trainer = Trainer(model, batches, TrainerConfig(steps=3000, batch_size=32), "runs/toy", tokenizer=tok)
    result = trainer.train(on_progress=print)      # resumes from the latest checkpoint in runs/toy
    thoughtlens.load("runs/toy/step_003000")       # every checkpoint is a model directory

`batches(step)` returns the batch of that step ({"input_ids": [batch, pos], "labels": [batch, pos] with -100
where no loss is taken, optional "attention_mask"}), so the data stream is a pure function of the step:
a resumed run sees exactly the batches an uninterrupted one would have seen, and with the optimizer state
restored it ends with the same weights (up to float noise, none on one CPU thread).

Layout of `out_dir`:
    step_000100/  config.json, model.safetensors (+ tokenizer files): what `thoughtlens.load` opens
                  optimizer.safetensors, trainer_state.json: what resuming needs
    log.jsonl     one line per logged step: {"step", "loss", "lr", "seconds"}
A checkpoint directory is written under a temporary name and renamed, so a killed run never leaves a
half-written one behind. Any `nn.Module` works: HF models are saved with `save_pretrained`; other modules
(e.g. the grokking transformer) give their own `save(model, dir)` function.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import nn

from thoughtlens.errors import ConfigError, ThoughtlensError
from thoughtlens.files import output_modes
from thoughtlens.progress import OnProgress, ProgressEvent

Batch = dict[str, torch.Tensor]
ProgressFn = Callable[[dict], None]
CHECKPOINT_PREFIX = "step_"


@dataclass(frozen=True)
class TrainerConfig:
    """steps: total optimizer steps. lr: peak AdamW learning rate after `warmup` linear steps, then
    constant (schedule="constant") or cosine to 10 % (schedule="cosine"). n_checkpoints: log-spaced
    checkpoints over [1, steps] (the last step always included). max_seconds: stop (and checkpoint) after
    this much wall time; the next `train()` resumes."""

    steps: int
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 100
    schedule: str = "cosine"
    grad_clip: float | None = 1.0
    seed: int = 0
    n_checkpoints: int = 12
    log_every: int = 10
    max_seconds: float | None = None
    decay_all: bool = False  # weight decay on biases and norms too (the grokking paper decays every parameter)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1:
            raise ConfigError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"unknown schedule '{self.schedule}': use 'constant' or 'cosine'")
        if self.n_checkpoints < 1:
            raise ConfigError(f"n_checkpoints must be >= 1, got {self.n_checkpoints}")


@dataclass
class TrainResult:
    step: int  # the last step done
    finished: bool  # step == config.steps
    seconds: float  # wall time of this call
    resumed_from: int  # 0 for a fresh start
    last_loss: float | None


def log_spaced_steps(total: int, n: int) -> list[int]:
    """About n distinct steps, log-spaced over [1, total], always ending with total."""
    if n <= 1 or total <= 1:
        return [total]
    steps = {int(round(math.exp(math.log(total) * i / (n - 1)))) for i in range(n)}
    return sorted({min(max(s, 1), total) for s in steps} | {total})


def checkpoint_dirs(out_dir: str | Path) -> list[Path]:
    """Complete checkpoint directories under out_dir, by step."""
    out = Path(out_dir)
    found = [p for p in out.glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir() and (p / "trainer_state.json").is_file()]
    return sorted(found, key=checkpoint_step)


def checkpoint_step(path: str | Path) -> int:
    name = Path(path).name
    if not name.startswith(CHECKPOINT_PREFIX) or not name[len(CHECKPOINT_PREFIX) :].isdigit():
        raise ThoughtlensError(f"{path} is not a checkpoint directory (want {CHECKPOINT_PREFIX}NNNNNN)")
    return int(name[len(CHECKPOINT_PREFIX) :])


def training_device(device: str | torch.device) -> torch.device:
    """The device to train on, checked: an unknown name or a GPU this machine lacks is a one-line error."""
    from thoughtlens.model.load import check_device

    return check_device(device, error=ConfigError, verb="pass", cpu_fix="train on cpu")


def progress_events(on_progress: OnProgress, task: str = "training", description: str = "training") -> ProgressFn:
    """A `Trainer.train` callback that passes each logged step on as a ProgressEvent (thoughtlens.progress):
    description "<description> (loss L)", completed = the step, total = the steps, elapsed_s = the training
    time so far (a resumed run's earlier calls included, so the ETA stays right). Records with a "phase"
    key (the toy model's two phases) get " phase N" after the description and a task of their own."""

    def send(record: dict) -> None:
        phase = record.get("phase")
        name = f"{description} phase {phase}" if phase is not None else description
        on_progress(
            ProgressEvent(
                f"{task} {phase}" if phase is not None else task,
                f"{name} (loss {record['loss']:.4g})",
                int(record["step"]),
                int(record["total"]),
                elapsed_s=float(record["seconds"]),
            )
        )

    return send


def save_hf(model: nn.Module, directory: Path) -> None:
    """HF models: config.json + model.safetensors, what `thoughtlens.load` and from_pretrained read."""
    model.save_pretrained(directory, safe_serialization=True)


def load_hf(model: nn.Module, directory: Path) -> None:
    from safetensors.torch import load_file

    state = load_file(directory / "model.safetensors")
    missing, unexpected = model.load_state_dict(state, strict=False)
    # Tied weights are saved once; anything else missing means a different architecture.
    if unexpected or any("lm_head" not in k for k in missing):
        raise ThoughtlensError(
            f"checkpoint {directory} does not match the model (missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}): resume with the same model config"
        )


class Trainer:
    """Train `model` on `batches(step)` with AdamW; see the module docstring."""

    def __init__(
        self,
        model: nn.Module,
        batches: Callable[[int], Batch],
        config: TrainerConfig,
        out_dir: str | Path,
        *,
        tokenizer=None,
        loss_fn: Callable[[nn.Module, Batch], torch.Tensor] | None = None,
        save: Callable[[nn.Module, Path], None] = save_hf,
        load: Callable[[nn.Module, Path], None] = load_hf,
        extra_checkpoint_steps: tuple[int, ...] = (),
        device: str | torch.device = "cpu",
    ):
        self.device = training_device(device)
        self.model, self.batches, self.config = model.to(self.device), batches, config
        self.out_dir = Path(out_dir)
        self.tokenizer = tokenizer
        self.loss_fn = loss_fn or causal_lm_loss
        self._save_model, self._load_model = save, load
        self.checkpoint_steps = sorted(
            set(log_spaced_steps(config.steps, config.n_checkpoints))
            | {s for s in extra_checkpoint_steps if 1 <= s <= config.steps}
        )
        torch.manual_seed(config.seed)
        decay = [p for p in model.parameters() if p.requires_grad and (p.ndim >= 2 or config.decay_all)]
        no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2 and not config.decay_all]
        groups = [{"params": decay, "weight_decay": config.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})  # norms and biases: no decay (as nanoGPT)
        self.optimizer = torch.optim.AdamW(groups, lr=config.lr, betas=config.betas)
        self.step = 0

    # ---- schedule ------------------------------------------------------------------------------------

    def lr_at(self, step: int) -> float:
        cfg = self.config
        if step < cfg.warmup:
            return cfg.lr * (step + 1) / cfg.warmup
        if cfg.schedule == "constant":
            return cfg.lr
        frac = (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)
        return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    # ---- the loop ------------------------------------------------------------------------------------

    def train(self, on_progress: ProgressFn | None = None) -> TrainResult:
        """Train to config.steps (or max_seconds), resuming from the latest checkpoint in out_dir."""
        cfg = self.config
        resumed_from = self.resume()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        t0, last_loss, seconds_before = time.perf_counter(), None, self._seconds_so_far()
        self.model.train()
        while self.step < cfg.steps:
            batch = {k: v.to(self.device) for k, v in self.batches(self.step).items()}
            for group in self.optimizer.param_groups:
                group["lr"] = self.lr_at(self.step)
            loss = self.loss_fn(self.model, batch)
            if not torch.isfinite(loss):
                raise ThoughtlensError(f"loss is {loss.item()} at step {self.step}: lower lr (now {cfg.lr})")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip is not None:
                nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.optimizer.step()
            self.step += 1
            last_loss = float(loss.detach())
            elapsed = time.perf_counter() - t0
            if self.step % cfg.log_every == 0 or self.step in self.checkpoint_steps or self.step == cfg.steps:
                record = {
                    "step": self.step,
                    "loss": last_loss,
                    "lr": self.lr_at(self.step - 1),
                    "seconds": round(seconds_before + elapsed, 3),
                }
                with open(self.out_dir / "log.jsonl", "a") as f:
                    f.write(json.dumps(record) + "\n")
                if on_progress is not None:
                    on_progress({**record, "total": cfg.steps})
            timed_out = cfg.max_seconds is not None and elapsed >= cfg.max_seconds
            if self.step in self.checkpoint_steps or timed_out:
                self.save_checkpoint(seconds_before + elapsed)
            if timed_out:
                break
        self.model.eval()
        return TrainResult(self.step, self.step >= cfg.steps, time.perf_counter() - t0, resumed_from, last_loss)

    # ---- checkpoints ---------------------------------------------------------------------------------

    def save_checkpoint(self, seconds: float) -> Path:
        """Write step_NNNNNN/ atomically (temporary directory, then rename)."""
        from safetensors.torch import save_file

        final = self.out_dir / f"{CHECKPOINT_PREFIX}{self.step:06d}"
        tmp = self.out_dir / f".tmp-{final.name}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self._save_model(self.model, tmp)
        if self.tokenizer is not None:
            self.tokenizer.save_pretrained(tmp)
        tensors, meta = _flatten_optimizer(self.optimizer.state_dict())
        save_file(tensors, tmp / "optimizer.safetensors")
        state = {"step": self.step, "seconds": seconds, "config": asdict(self.config), "optimizer": meta}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=1))
        output_modes(tmp)
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
        return final

    def resume(self) -> int:
        """Load the latest checkpoint in out_dir, if any; return its step (0 when starting fresh)."""
        from safetensors.torch import load_file

        found = checkpoint_dirs(self.out_dir)
        if not found:
            return 0
        latest = found[-1]
        state = json.loads((latest / "trainer_state.json").read_text())
        saved = {k: tuple(v) if isinstance(v, list) else v for k, v in state["config"].items()}
        mismatch = [
            k
            for k in ("seed", "batch_size", "lr", "weight_decay", "schedule", "warmup")
            if saved.get(k) != getattr(self.config, k)
        ]
        if mismatch:
            raise ThoughtlensError(
                f"{self.out_dir} holds a run with different {', '.join(mismatch)}: "
                "use the same config to resume, or a new out_dir"
            )
        self._load_model(self.model, latest)
        self.optimizer.load_state_dict(
            _unflatten_optimizer(load_file(latest / "optimizer.safetensors"), state["optimizer"])
        )  # moved to the params' device
        self.step = int(state["step"])
        return self.step

    def _seconds_so_far(self) -> float:
        found = checkpoint_dirs(self.out_dir)
        if not found:
            return 0.0
        return float(json.loads((found[-1] / "trainer_state.json").read_text()).get("seconds", 0.0))


def causal_lm_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """Next-token cross-entropy of an HF causal LM, on the positions whose label is not -100."""
    return model(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask"), labels=batch["labels"]).loss


def _flatten_optimizer(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    """An optimizer state dict as flat tensors (for safetensors) plus JSON metadata, never pickle."""
    tensors, scalars = {}, {}
    for idx, per_param in state_dict["state"].items():
        for key, value in per_param.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{idx}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars[f"{idx}.{key}"] = value
    return tensors, {"param_groups": state_dict["param_groups"], "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for flat, value in [*tensors.items(), *meta["scalars"].items()]:
        idx, key = flat.split(".", 1)
        state.setdefault(int(idx), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in meta["param_groups"]]
    return {"state": state, "param_groups": groups}
