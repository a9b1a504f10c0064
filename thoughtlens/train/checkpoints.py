"""A series of checkpoints: run any measure over it, and plot the measures over training.

    ckpts = Checkpoints("runs/toy")                     # every step_NNNNNN/ directory, by step
    df = ckpts.measure(lambda model: {"loss": held_out_loss(model)})   # one row per checkpoint
    ckpts.plot(df, "runs/toy/measures.png")

`load` defaults to `thoughtlens.load(path, dtype=float32)` (HF model directories); pass another loader for
other modules (the grokking transformer gives `grokking.load_checkpoint`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from thoughtlens.errors import ThoughtlensError
from thoughtlens.train.trainer import checkpoint_dirs, checkpoint_step


def _load_hf(path: Path):
    from thoughtlens.model.load import load

    return load(str(path), dtype="float32")


class Checkpoints:
    """The checkpoint directories of one training run (see `thoughtlens.train.trainer`), by step."""

    def __init__(self, directory: str | Path, *, load: Callable[[Path], Any] = _load_hf):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ThoughtlensError(f"no checkpoint directory at {self.directory}: train first, or check the path")
        self.paths = checkpoint_dirs(self.directory)
        if not self.paths:
            raise ThoughtlensError(f"{self.directory} holds no step_NNNNNN checkpoints: train first, or check the path")
        self._load = load

    @property
    def steps(self) -> list[int]:
        return [checkpoint_step(p) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def path(self, step: int) -> Path:
        for p in self.paths:
            if checkpoint_step(p) == step:
                return p
        raise ThoughtlensError(f"no checkpoint at step {step}: available steps are {self.steps}")

    def load(self, step: int | None = None):
        """The model at `step` (default: the last checkpoint)."""
        return self._load(self.paths[-1] if step is None else self.path(step))

    def measure(
        self,
        fn: Callable[[Any], float | dict[str, float]],
        steps: Sequence[int] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> pd.DataFrame:
        """fn(model) for each checkpoint (or the given steps): a DataFrame with a `step` column and one
        column per measure (a float result becomes column "value")."""
        chosen = self.steps if steps is None else list(steps)
        rows = []
        for i, step in enumerate(chosen):
            out = fn(self.load(step))
            rows.append({"step": step, **(out if isinstance(out, dict) else {"value": float(out)})})
            if on_progress is not None:
                on_progress(i + 1, len(chosen))
        return pd.DataFrame(rows)

    def plot(self, df: pd.DataFrame, path: str | Path, **kw) -> Path:
        """`plot_measures(df, path, **kw)`: the measures over training, as a PNG."""
        return plot_measures(df, path, **kw)


def plot_measures(
    df: pd.DataFrame,
    path: str | Path,
    *,
    panels: Sequence[Sequence[str]] | None = None,
    log_y: Sequence[str] = (),
    logx: bool = False,
    title: str = "",
    marks: dict[str, float] | None = None,
) -> Path:
    """One panel per group of columns of `df` (default: one per column), x = step; saved as PNG.

    log_y: panels (by their first column) drawn with a log y axis. marks: labelled vertical lines
    {label: step}, e.g. where test accuracy crosses 99 %.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "step" not in df.columns:
        raise ThoughtlensError("the measures need a 'step' column: pass the DataFrame from Checkpoints.measure")
    panels = [list(g) for g in (panels or [[c] for c in df.columns if c != "step"])]
    missing = [c for g in panels for c in g if c not in df.columns]
    if missing:
        raise ThoughtlensError(f"columns {missing} are not in the measures: choose from {list(df.columns)}")
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.3 * len(panels)), sharex=True, squeeze=False)
    for ax, group in zip(axes[:, 0], panels):
        for col in group:
            ax.plot(df["step"], df[col], marker=".", label=col)
        if group[0] in log_y:
            ax.set_yscale("log")
        for label, x in (marks or {}).items():
            ax.axvline(x, color="grey", linestyle="--", linewidth=0.8)
        ax.legend(loc="best", fontsize=8)
        ax.grid(alpha=0.3)
    if logx:
        axes[-1, 0].set_xscale("log")
    for label, x in (marks or {}).items():
        axes[0, 0].annotate(
            label, (x, 1), xycoords=("data", "axes fraction"), fontsize=7, rotation=90, va="top", ha="right"
        )
    axes[-1, 0].set_xlabel("step")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
