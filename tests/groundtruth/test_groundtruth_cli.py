"""`thoughtlens ground-truth ...`: one red error line on bad input, and a tiny grokking run end to end."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from thoughtlens.cli import app


def test_bench_anchors_missing_model_is_one_error_line(tmp_path):
    result = CliRunner().invoke(
        app,
        [
            "ground-truth",
            "bench-anchors",
            "--model",
            str(tmp_path / "nope"),
            "--store",
            str(tmp_path / "s.sqlite"),
            "-o",
            str(tmp_path / "out"),
        ],
    )
    assert result.exit_code == 1
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "train it first" in lines[0]


def _xent(logits: np.ndarray, labels: np.ndarray) -> float:
    """Mean cross-entropy, log-sum-exp written out in float64."""
    m = logits.max(-1, keepdims=True)
    lse = m[:, 0] + np.log(np.exp(logits - m).sum(-1))
    return float(np.mean(lse - logits[np.arange(len(labels)), labels]))


def _measures_by_hand(step_dir, p: int, frac_train: float, seed: int, key_freqs: list[int]) -> dict[str, float]:
    """The progress measures of one checkpoint, from its weights with numpy (Fourier components via the FFT)."""
    from safetensors.numpy import load_file

    from thoughtlens.train.grokking import load_checkpoint

    weights = load_file(step_dir / "model.safetensors")
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    a, b = a.ravel(), b.ravel()
    labels = (a + b) % p
    tokens = torch.tensor(np.stack([a, b, np.full(p * p, p)], 1))
    with torch.no_grad():
        logits = load_checkpoint(step_dir)(tokens).double().numpy()
    is_train = np.zeros(p * p, bool)
    is_train[
        torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))[: int(frac_train * p * p)].numpy()
    ] = True
    # Logits along cos / sin(w (a + b)) for the key frequencies: unit vectors over the p*p pairs.
    keyed = np.zeros_like(logits)
    for f in key_freqs:
        for wave in (np.cos, np.sin):
            u = wave(2 * np.pi * f * (a + b) / p)
            u /= np.linalg.norm(u)
            keyed += np.outer(u, u @ logits)
    excluded = logits - keyed
    # Norms of the number embeddings' components on the orthonormal Fourier basis (constant, cos f, sin f).
    F = np.fft.rfft(weights["W_E"][:p].astype(np.float64), axis=0)  # row f: sum_x W[x] exp(-2 pi i f x / p)
    comps = [np.linalg.norm(F[0]) / np.sqrt(p)]
    for f in range(1, p // 2 + 1):
        comps += [np.sqrt(2 / p) * np.linalg.norm(F[f].real), np.sqrt(2 / p) * np.linalg.norm(F[f].imag)]
    comps = np.array(comps)
    return {
        "train_loss": _xent(logits[is_train], labels[is_train]),
        "test_loss": _xent(logits[~is_train], labels[~is_train]),
        "train_acc": float(np.mean(logits[is_train].argmax(-1) == labels[is_train])),
        "test_acc": float(np.mean(logits[~is_train].argmax(-1) == labels[~is_train])),
        "restricted_loss": _xent(keyed + excluded.mean(0, keepdims=True), labels),
        "excluded_loss": _xent(excluded[is_train], labels[is_train]),
        # Gini: mean absolute difference over all pairs / (2 * mean)
        "gini_embed_fourier": float(np.abs(comps[:, None] - comps[None, :]).mean() / (2 * comps.mean())),
        "weight_norm_sq": float(sum(np.sum(w.astype(np.float64) ** 2) for w in weights.values())),
    }


@pytest.mark.slow
def test_grokking_command_writes_measures_and_plot(tmp_path):
    """measures.csv holds, for every checkpoint, the progress measures recomputed here from its weights; the
    printed summary agrees with it; progress.png decodes and shows its five stacked panels."""
    import json
    import re

    import pandas as pd
    from PIL import Image

    out = tmp_path / "grok"
    result = CliRunner().invoke(app, ["ground-truth", "grokking", "--out", str(out), "--steps", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    cfg = json.loads((out / "step_000003" / "grokking_config.json").read_text())
    p = cfg["p"]

    # Key frequencies: those holding >= 4% of the final embedding's squared Fourier norm, largest share first.
    from safetensors.numpy import load_file

    F = np.fft.rfft(load_file(out / "step_000003" / "model.safetensors")["W_E"][:p].astype(np.float64), axis=0)
    share = (np.abs(F[1:]) ** 2).sum(-1)
    share /= share.sum()
    want_freqs = [int(f) + 1 for f in np.argsort(-share, kind="stable") if share[f] >= 0.04]
    printed = re.search(r"key frequencies: \[([0-9, ]*)\]", text)
    assert printed and [int(x) for x in printed.group(1).split(",") if x.strip()] == want_freqs

    df = pd.read_csv(out / "measures.csv")
    steps = sorted(int(d.name.removeprefix("step_")) for d in out.glob("step_*"))
    assert df["step"].tolist() == steps == [1, 2, 3]
    for _, row in df.iterrows():
        want = _measures_by_hand(out / f"step_{int(row['step']):06d}", p, cfg["frac_train"], cfg["seed"], want_freqs)
        assert set(want) | {"step"} == set(df.columns)
        for name in ("train_acc", "test_acc"):
            assert row[name] == pytest.approx(want[name], abs=1e-12), name
        # losses: float32 logits of size ~1, a sum over p classes; the rest: float64 sums of the weights
        for name in ("train_loss", "test_loss", "restricted_loss", "excluded_loss"):
            numerics.assert_close(np.float64(row[name]), np.float64(want[name]), dtype=torch.float32, depth=p, msg=name)
        numerics.assert_close(
            np.float64(row["gini_embed_fourier"]),
            np.float64(want["gini_embed_fourier"]),
            dtype=torch.float64,
            depth=p,
            msg="gini",
        )
        numerics.assert_close(
            np.float64(row["weight_norm_sq"]),
            np.float64(want["weight_norm_sq"]),
            dtype=torch.float64,
            depth=len(load_file(out / "step_000001" / "model.safetensors")),
            msg="weight_norm_sq",
        )
    last = df.iloc[-1]
    assert f"final test acc {last['test_acc']:.3f}" in text
    assert f"restricted loss {last['restricted_loss']:.2e}, excluded loss {last['excluded_loss']:.2f}" in text

    with Image.open(out / "progress.png") as im:
        assert im.format == "PNG"
        gray = np.asarray(im.convert("L")).astype(int)
    assert gray.std() > 10  # not blank
    # Five panels (losses, accuracies, restricted/excluded loss, Gini, weight norm): each axis box has a dark
    # top and bottom spine spanning most of the width.
    dark_rows = np.flatnonzero((gray < 100).mean(1) > 0.5)
    spines = np.split(dark_rows, np.flatnonzero(np.diff(dark_rows) > 1) + 1) if len(dark_rows) else []
    assert len(spines) == 10
