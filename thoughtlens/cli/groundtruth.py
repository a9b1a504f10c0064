"""`thoughtlens ground-truth ...`: the planted-anchor toy model, the anchors benchmark, grokking.

    thoughtlens ground-truth train-toy --out runs/toy --seed 0
    thoughtlens ground-truth bench-anchors --model runs/toy/final --store runs/bench.sqlite --seed 0
    thoughtlens ground-truth grokking --out runs/grok --seed 0

Thin commands: parse options, call thoughtlens.groundtruth / thoughtlens.train, render with rich.
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import typer

from thoughtlens.cli import _common as c

app = typer.Typer(
    help="Ground truth for attribution methods: a toy model with planted anchors, and grokking.", no_args_is_help=True
)


def _threads(n: int) -> None:
    import torch

    torch.set_num_threads(n)


@contextlib.contextmanager
def _progress(con):
    """Progress events as live bars (step, loss, elapsed, ETA) on a terminal; piped, as plain lines on stderr:
    one per task every few seconds, and its last step."""
    from thoughtlens.progress import line_printer

    if con.is_terminal:
        with c.RichProgress(con) as bars:
            yield bars
    else:
        yield line_printer(every_s=5.0, stream=sys.stderr)


def _counter(show, task: str, description: str):
    """A `fn(done, total)` callback (checkpoint measures) sending progress events, with elapsed time and ETA."""
    from thoughtlens.progress import Tracker

    tracker: list = []

    def advance(done: int, total: int) -> None:
        if not tracker:
            tracker.append(Tracker(show, task, description, total))
        tracker[0].advance(done - tracker[0].completed)

    return advance


def _reached(step: int | None) -> str:
    return "never reached" if step is None else f"at step {step}"


@app.command("train-toy")
@c.command
def train_toy(
    out: str = typer.Option("runs/toy", "--out", help="Checkpoint directory (resumes if present)."),
    seed: int = typer.Option(0, help="Seed of the model init and the data stream."),
    steps: int = typer.Option(4000, help="Optimizer steps."),
    batch_size: int = typer.Option(32, help="Chains per step."),
    lr: float = typer.Option(3e-3, help="Peak learning rate."),
    max_seconds: float = typer.Option(None, help="Stop (resumable) after this much training time."),
    device: str = typer.Option(
        "cpu", "--device", help="Where training (and the accuracy check) runs: cpu, cuda, cuda:1 ..."
    ),
    threads: int = typer.Option(2, help="torch CPU threads."),
    eval_n: int = typer.Option(400, help="Held-out chains for the accuracy."),
) -> None:
    """Train the planted-anchor reasoning toy model and print its held-out accuracy.

    Two phases: --steps steps on the training prompts, then a second phase that follows the options
    (7.5 % as many steps, a third of the learning rate: 300 steps after the default 4000)."""
    from thoughtlens.groundtruth.toy_model import accuracy, train_toy_model
    from thoughtlens.model.load import load
    from thoughtlens.train.trainer import progress_events

    _threads(threads)
    con = c.console()
    with _progress(con) as show:
        final = train_toy_model(
            out,
            seed=seed,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            max_seconds=max_seconds,
            device=device,
            on_progress=progress_events(show, "training", "training toy"),
        )
    if not final.is_dir():
        con.print(f"stopped before step {steps}: run the same command again to resume")
        return
    with con.status("held-out accuracy"):
        acc = accuracy(load(str(final), dtype="float32", device=device), n=eval_n, seed=seed + 1)
    c.stdout().print(
        f"{final}: answer accuracy {acc.answer_accuracy:.1%}, chain validity {acc.chain_validity:.1%} "
        f"(n={acc.n} held-out chains)"
    )


@app.command("bench-anchors")
@c.command
def bench_anchors(
    model: str = typer.Option("runs/toy/final", "--model", help="The trained toy model directory."),
    store: str = typer.Option("runs/bench.sqlite", "--store", help="Run store to write (resumes if present)."),
    output: str = typer.Option("runs/bench", "-o", "--output", help="Directory for bench.json and bench.md."),
    seed: int = typer.Option(0, help="Seed of the base traces and rollouts."),
    n_traces: int = typer.Option(24, help="Base traces (>= 20 for meaningful CIs)."),
    n_rollouts: int = typer.Option(20, help="Rollouts per sentence."),
    threads: int = typer.Option(2, help="torch CPU threads."),
) -> None:
    """Score every anchors method against the toy model's planted ground truth (AUROC with CIs)."""
    from rich.table import Table

    from thoughtlens.groundtruth.benchmark import BenchConfig, run_benchmark, save_result

    _threads(threads)
    cfg = BenchConfig(n_traces=n_traces, n_rollouts=n_rollouts, seed=seed)
    con = c.console()
    with con.status("benchmark") as status:
        result = run_benchmark(model, store, cfg, on_progress=status.update)
    save_result(result, Path(output) / "bench.json", cfg)
    (Path(output) / "bench.md").write_text(result.to_markdown() + "\n")
    table = Table(title=f"anchors methods vs planted truth ({result.n_valid} traces, {n_rollouts} rollouts)")
    for col in ("method", "truth", "AUROC", "95% CI", "pos/neg", "coverage"):
        table.add_column(col, justify="left" if col in ("method", "truth") else "right")
    for r in result.table.itertuples():
        table.add_row(
            r.method,
            r.truth,
            f"{r.auroc:.3f}",
            f"[{r.ci_lo:.2f}, {r.ci_hi:.2f}]",
            f"{r.n_pos}/{r.n_neg}",
            f"{r.coverage:.0%}",
        )
    c.stdout().print(table)
    con.print(
        f"plan has the top receiver score in {result.extra.get('plan_top_receiver', float('nan')):.0%} of traces; "
        f"wrote {output}/bench.json and bench.md"
    )


@app.command("grokking")
@c.command
def grokking(
    out: str = typer.Option("runs/grok", "--out", help="Checkpoint directory (resumes if present)."),
    seed: int = typer.Option(0, help="Seed of the model init and the train/test split."),
    steps: int = typer.Option(10000, help="Full-batch optimizer steps."),
    max_seconds: float = typer.Option(None, help="Stop (resumable) after this much training time."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    threads: int = typer.Option(2, help="torch CPU threads."),
) -> None:
    """Grok modular addition (p = 113) and plot the progress measures of Nanda et al. 2023."""
    from dataclasses import replace

    from thoughtlens.train.grokking import GrokkingConfig, grokking_measures, plot_grokking, train_grokking
    from thoughtlens.train.trainer import progress_events

    _threads(threads)
    con = c.console()
    with _progress(con) as show:
        result = train_grokking(
            out,
            replace(GrokkingConfig(), seed=seed, steps=steps),
            max_seconds=max_seconds,
            device=device,
            on_progress=progress_events(show, "training", "grokking"),
        )
        df, summary = grokking_measures(out, on_progress=_counter(show, "measures", "progress measures"))
    df.to_csv(Path(out) / "measures.csv", index=False)
    png = plot_grokking(df, Path(out) / "progress.png", summary)
    last = summary.final
    c.stdout().print(
        f"key frequencies: {summary.key_freqs}; train acc 100% {_reached(summary.step_train_100)}, "
        f"test acc >= 99% {_reached(summary.step_test_99)}; final test acc {last['test_acc']:.3f}, "
        f"restricted loss {last['restricted_loss']:.2e}, excluded loss {last['excluded_loss']:.2f}"
    )
    con.print(f"{'finished' if result.finished else 'stopped at step ' + str(result.step)}; wrote {png}")
