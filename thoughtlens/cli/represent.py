"""`thoughtlens represent directions|probe|steer|ablate`: directions, probes, steering, directional ablation.

Thin commands over thoughtlens.represent; a direction file is safetensors with one tensor "direction"
([n_layers, d_model] from `directions`, or [d_model]) and its hook in the metadata.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from thoughtlens.cli import _common as c

app = typer.Typer(
    help="Directions, probes, steering and directional ablation (library: thoughtlens.represent).", no_args_is_help=True
)


def _read_prompts(path: str) -> list[str]:
    """Prompts from a .txt file (one per line), a .json list of strings, or FILE.json:KEY, one list of a JSON
    object such as the shipped refusal_prompts.json ({"harmful": [...], "harmless": [...]})."""
    from thoughtlens.errors import ConfigError

    p, key = Path(path), None
    if not p.is_file() and ":" in path:
        head, key = path.rsplit(":", 1)
        p = Path(head)
    if not p.is_file():
        raise ConfigError(
            f"prompt file {path} not found: pass a .json list of strings, FILE.json:KEY for one list of a JSON "
            "object, or a .txt file with one prompt per line"
        )
    if p.suffix != ".json":
        if key is not None:
            raise ConfigError(f"{path}: FILE:KEY picks a list of a .json file; {p} is not one")
        return [line for line in p.read_text().splitlines() if line.strip()]
    try:
        data = json.loads(p.read_text())
    except ValueError as exc:
        raise ConfigError(f"{p} is not valid JSON ({exc}): pass a JSON list of strings") from None
    if isinstance(data, dict):
        lists = [k for k, v in data.items() if isinstance(v, list)]
        if key is None and len(lists) == 1:
            key = lists[0]
        if key is None:
            raise ConfigError(
                f"{p} holds several prompt lists ({', '.join(lists) or 'none'}): pick one as {p}:KEY, "
                f"e.g. {p}:{(lists or ['harmful'])[0]}"
            )
        if key not in data:
            raise ConfigError(f"{p} has no list '{key}' (lists: {', '.join(lists) or 'none'}): pass {p}:KEY")
        data = data[key]
    elif key is not None:
        raise ConfigError(f"{p} holds a list, not an object with named lists: pass {p} without ':{key}'")
    if not isinstance(data, list) or not data or not all(isinstance(x, str) for x in data):
        raise ConfigError(f"{path} must hold a non-empty JSON list of strings")
    return data


def _load_direction(path: str, layer: int | None):
    from safetensors import safe_open

    from thoughtlens.errors import ConfigError

    if not Path(path).is_file():
        raise ConfigError(f"direction file {path} not found: write one with `thoughtlens represent directions`")
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
        d = f.get_tensor("direction")
    if d.ndim == 2:
        if layer is None:
            raise ConfigError(f"{path} holds one direction per layer ({d.shape[0]}): pass --layer")
        if not 0 <= layer < d.shape[0]:
            raise ConfigError(f"layer {layer} does not exist in {path}: layers are 0..{d.shape[0] - 1}")
        d = d[layer]
    return d, meta


@app.command("directions")
@c.command
def directions(
    positive: str = typer.Option(
        ...,
        help="Prompts of the concept: .json list, FILE.json:KEY (one list of a JSON object, e.g. the shipped "
        "refusal_prompts.json:harmful) or .txt, one per line.",
    ),
    negative: str = typer.Option(..., help="Prompts without it (same forms, e.g. refusal_prompts.json:harmless)."),
    output: str = typer.Option("direction.safetensors", "-o", "--output", help="Where to write the directions."),
    model: str = typer.Option(None, help="Model (default: the bundled SmolLM2-135M-Instruct)."),
    hook: str = typer.Option("resid_pre", help="Hook kind, read at each prompt's last token in every layer."),
    method: str = typer.Option("diff_in_means", help="diff_in_means | pca | probe."),
    chat: bool = typer.Option(True, help="Wrap each prompt in the model's chat template."),
) -> None:
    """Per-layer directions between two prompt sets, with held-out AUROC per layer (where is it separable?)."""
    import torch
    from rich.table import Table
    from safetensors.torch import save_file

    from thoughtlens.model.load import load
    from thoughtlens.represent.directions import direction, direction_sweep
    from thoughtlens.represent.refusal import chat_prompts, last_token_activations

    pos, neg = _read_prompts(positive), _read_prompts(negative)
    with c.console().status("loading model"):
        m = load(model)
    if chat:
        pos, neg = chat_prompts(m, pos), chat_prompts(m, neg)
    with c.console().status("reading activations"):
        a, b = last_token_activations(m, pos, hook), last_token_activations(m, neg, hook)
    names = list(a)
    sweep = direction_sweep({i: (a[n], b[n]) for i, n in enumerate(names)}, methods=[method])
    dirs = torch.stack([direction(a[n], b[n], method) for n in names])
    save_file({"direction": dirs.contiguous()}, output, metadata={"hook": hook, "method": method, "model": m.name})
    table = Table(title=f"{method} direction per layer ({len(pos)} vs {len(neg)} prompts; AUROC on a held-out half)")
    for col in ("layer", "hook", "AUROC", "norm"):
        table.add_column(col)
    for s, n in zip(sweep, names):
        table.add_row(str(s.layer), n, c.fmt(s.auroc, 3), c.fmt(s.norm, 2))
    c.stdout().print(table)
    c.console().print(f"wrote {output}")


@app.command("probe")
@c.command
def probe(
    acts: str = typer.Argument(
        ..., help="Sentence activations (.npz from thoughtlens.represent.sentence_activations)."
    ),
    target: str = typer.Option("category", help="Metadata column to predict."),
    group: str = typer.Option(
        "trace_id", help="Metadata column to group splits by (never train and test on one group)."
    ),
    task: str = typer.Option("classify", help="classify (logistic) | regress (ridge)."),
    layers: str = typer.Option(None, help="Comma-separated layers (default: all collected)."),
    control: bool = typer.Option(False, help="Also fit a Hewitt-Liang control task and report selectivity."),
    splits: int = typer.Option(5, help="Grouped cross-validation folds."),
    output: str = typer.Option(None, "-o", "--output", help="Also write the table here: .csv or .json."),
) -> None:
    """A linear probe per layer with grouped splits: score, CI, control task and selectivity."""
    import numpy as np
    from rich.table import Table

    from thoughtlens.errors import ConfigError
    from thoughtlens.represent.probes import layer_sweep
    from thoughtlens.represent.sentence_activations import SentenceActivations

    if output is not None and Path(output).suffix.lower() not in (".csv", ".json"):
        raise ConfigError(f"cannot write {output}: name a .csv or .json file with -o")
    if not Path(acts).is_file():
        raise ConfigError(f"{acts} not found: collect sentence activations first (SentenceActivations.to_npz)")
    data = SentenceActivations.from_npz(acts)
    for col in (target, group):
        if col not in data.meta:
            raise ConfigError(f"column '{col}' is not in {acts} (columns: {', '.join(data.meta.columns)})")
    y = data.meta[target].to_numpy()
    rows = np.isfinite(y.astype(float)) if task == "regress" else None
    chosen = [int(x) for x in layers.split(",")] if layers else None
    sweep = layer_sweep(
        data, y, data.meta[group].to_numpy(), layers=chosen, task=task, control=control, rows=rows, n_splits=splits
    )
    metric = "accuracy" if task == "classify" else "Spearman"
    table = Table(title=f"{task} probe of '{target}', {splits} folds grouped by '{group}'")
    for col in ("layer", metric, "95% CI", "AUROC", "control", "selectivity"):
        table.add_column(col)
    for r in sweep.rows:
        table.add_row(
            str(r.layer),
            c.fmt(r.score, 3),
            f"[{c.fmt(r.ci[0], 3)}, {c.fmt(r.ci[1], 3)}]",
            c.fmt(r.auroc, 3),
            c.fmt(r.control_score, 3),
            c.fmt(r.selectivity, 3),
        )
    c.stdout().print(table)
    if output is not None:
        _write_probe_table(Path(output), sweep, metric, target, group, task)
        c.console().print(f"wrote {output}", highlight=False, markup=False)


def _write_probe_table(path: Path, sweep, metric: str, target: str, group: str, task: str) -> None:
    """The probe table as CSV (one row per layer) or JSON (the same rows and the settings)."""
    import pandas as pd

    from thoughtlens.jsonsafe import json_safe

    rows = [
        {
            "layer": r.layer,
            metric: r.score,
            "ci_low": r.ci[0],
            "ci_high": r.ci[1],
            "auroc": r.auroc,
            "control": r.control_score,
            "selectivity": r.selectivity,
            "n": r.n,
            "n_groups": r.n_groups,
        }
        for r in sweep.rows
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".csv":
        pd.DataFrame(rows).to_csv(path, index=False)
    else:
        doc = {"task": task, "target": target, "group": group, "metric": metric, "rows": rows}
        path.write_text(json.dumps(json_safe(doc), indent=2) + "\n")


@app.command("steer")
@c.command
def steer(
    prompt: str = typer.Argument(..., help="User message (wrapped in the chat template)."),
    direction: str = typer.Option(..., help="Direction file (from `thoughtlens represent directions`)."),
    layer: int = typer.Option(None, help="Which layer's direction, and where to add it."),
    scale: list[float] = typer.Option([-1.0, 0.0, 1.0], help="Multipliers to compare (repeat the option)."),
    model: str = typer.Option(None, help="Model (default: the bundled SmolLM2-135M-Instruct)."),
    max_new_tokens: int = typer.Option(48, help="Tokens to generate."),
) -> None:
    """Generate greedily with the direction added at one layer (every position), once per scale."""
    from thoughtlens.model.interventions import add_direction
    from thoughtlens.model.load import load

    d, meta = _load_direction(direction, layer)
    with c.console().status("loading model"):
        m = load(model)
    hook = f"blocks.{layer if layer is not None else 0}.hook_{meta.get('hook', 'resid_pre').removeprefix('hook_')}"
    text = m.apply_chat_template(prompt)
    out = c.stdout()
    for s in scale:
        with add_direction(m, hook, d, scale=s):
            out.print(
                f"[bold]scale {s:+g}[/bold] ({hook}): {m.generate(text, max_new_tokens=max_new_tokens)}",
                highlight=False,
            )


@app.command("ablate")
@c.command
def ablate(
    direction: str = typer.Option(..., help="Direction file (from `thoughtlens represent directions`)."),
    output: str = typer.Option(..., "-o", "--output", help="New model directory to write."),
    layer: int = typer.Option(None, help="Which layer's direction (for per-layer files)."),
    model: str = typer.Option(None, help="Model (default: the bundled SmolLM2-135M-Instruct)."),
) -> None:
    """Orthogonalise the weights against a direction and save a model that `thoughtlens.load` opens."""
    import torch

    from thoughtlens.model.load import load
    from thoughtlens.represent.ablation import orthogonalize_weights

    d, _ = _load_direction(direction, layer)
    with c.console().status("loading model"):
        m = load(model, dtype=torch.float32)
    path = orthogonalize_weights(m, d, output)
    c.console().print(f"wrote {path} (load it with thoughtlens.load({str(path)!r}))")
