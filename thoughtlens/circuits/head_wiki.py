"""The head wiki: one row per attention head with every detector score, and an attention mosaic.

`head_table(model)` -> DataFrame (model, layer, head, previous_token, duplicate_token, induction,
bos, induction_x_median). `write_head_wiki(models, out_dir)` saves `<name>.csv` and
`<name>.parquet` per model and `mosaic.png`: one induction-score heatmap (layer x head) per model,
side by side, on a shared colour scale.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import torch

from thoughtlens.circuits.heads import detect, repeated_random_tokens


def head_table(model, tokens: torch.Tensor | None = None) -> pd.DataFrame:
    """Every detector score of every head (definitions in `thoughtlens.circuits.heads`).

    induction_x_median: the head's induction score divided by the median head's, the "how special is
    this head" number (>= 10 for clear induction heads).
    """
    tokens = repeated_random_tokens(model) if tokens is None else tokens
    scores = detect(model, tokens)
    n_layers, n_heads = scores["induction"].shape
    df = pd.DataFrame(
        {
            "model": model.name,
            "layer": [L for L in range(n_layers) for _ in range(n_heads)],
            "head": [h for _ in range(n_layers) for h in range(n_heads)],
            **{name: s.flatten().numpy() for name, s in scores.items()},
        }
    )
    median = float(df["induction"].median())
    df["induction_x_median"] = df["induction"] / median if median > 0 else float("nan")
    return df


def safe_name(name: str) -> str:
    """A file name for a model name or path ("HuggingFaceTB/SmolLM2" -> "HuggingFaceTB_SmolLM2")."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name.strip("/")).strip("_") or "model"


def write_head_wiki(tables: list[pd.DataFrame], out_dir: str | Path) -> list[Path]:
    """Save each table as CSV and Parquet, and the mosaic of induction scores. Returns the paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for df in tables:
        stem = out / safe_name(str(df["model"].iloc[0]))
        df.to_csv(stem.with_suffix(".csv"), index=False)
        df.to_parquet(stem.with_suffix(".parquet"), index=False)
        paths += [stem.with_suffix(".csv"), stem.with_suffix(".parquet")]
    paths.append(attention_mosaic(tables, out / "mosaic.png"))
    return paths


def attention_mosaic(tables: list[pd.DataFrame], path: str | Path, score: str = "induction") -> Path:
    """PNG: one layer x head heatmap of `score` per model, side by side, one colour scale."""
    import matplotlib

    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(2.2 + 2.6 * len(tables), 6), squeeze=False)
    vmax = max(float(df[score].max()) for df in tables) or 1.0
    image = None
    for ax, df in zip(axes[0], tables):
        grid = df.pivot(index="layer", columns="head", values=score)
        image = ax.imshow(grid.values, aspect="auto", cmap="viridis", vmin=0, vmax=vmax, interpolation="nearest")
        ax.set_title(str(df["model"].iloc[0])[-28:], fontsize=9)
        ax.set_xlabel("head")
        ax.set_ylabel("layer")
    fig.colorbar(image, ax=axes[0].tolist(), label=f"{score} score")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
