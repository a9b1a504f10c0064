"""Leave-problems-out accuracy of encoder-labeller settings (context, epochs, whole-trace GRU, seeds), in the
same 10 GroupKFold folds as scripts/train_category_classifier.py, each setting's class probabilities kept
so that ensembles can be scored afterwards without retraining.

    python scripts/category_encoder_sweep.py --out runs/category_sweep [--device cuda] [--jobs 4]
        [--only c2e3,rnn_c1e10]
    python scripts/category_encoder_sweep.py --out runs/category_sweep --merge docs/category_encoder_sweep.json

A setting takes ~80 min on 2 CPU cores (10 folds of ~8 min) and about a minute on one H100, so the sweep is
meant for a GPU; each finished fold is kept (DIR/SETTING/fold_K.json, probabilities included; the cache of
thoughtlens.trace.label_eval.group_cv_predictions), so an interrupted sweep resumes. `--export-traces FILE` writes
the labelled sentences as one JSON (what the sweep reads with `--traces FILE` on a machine without ../shared/data).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# name -> keyword arguments of train_encoder_classifier (c1e3 is the setting of docs/category_encoder_cv.json)
SETTINGS: dict[str, dict] = {  # in the order a sweep runs them
    "c1e3": {"context": 1, "epochs": 3},
    "c2e3": {"context": 2, "epochs": 3},
    "rnn_c1e10": {"context": 1, "epochs": 10, "trace_rnn": True},
    "c1e6": {"context": 1, "epochs": 6},
    "c2e6": {"context": 2, "epochs": 6},
    "rnn_c1e20": {"context": 1, "epochs": 20, "trace_rnn": True},
    "c3e4": {"context": 3, "epochs": 4, "max_length": 256},
    "c1e3_s1": {"context": 1, "epochs": 3, "seed": 1},
    "c1e3_s2": {"context": 1, "epochs": 3, "seed": 2},
    "c2e3_s1": {"context": 2, "epochs": 3, "seed": 1},
    "rnn_c0e15": {"context": 0, "epochs": 15, "trace_rnn": True},
    "c1e3_lr5e-5": {"context": 1, "epochs": 3, "lr": 5e-5},
}


def load(args):
    if args.traces:
        d = json.loads(Path(args.traces).read_text())
        return d["traces"], d["labels"], d["groups"]
    from train_category_classifier import DEFAULT_DATA, load_traces

    return load_traces(args.data or DEFAULT_DATA)


def run_setting(name: str, traces, labels, groups, out: Path, splits: int, device: str) -> None:
    """10-fold leave-problems-out CV of one setting; each held-out sentence gets {tag: probability}."""
    from thoughtlens.trace.label_encoder import train_encoder_classifier
    from thoughtlens.trace.label_eval import group_cv_predictions

    t0 = time.time()

    def fit(train_traces, train_labels):
        clf = train_encoder_classifier(train_traces, train_labels, device=device, **SETTINGS[name])
        return lambda s: [dict(zip(clf.classes, map(float, np.round(p, 5)))) for p in clf.predict_proba(s)]

    def on_fold(k, n):
        print(f"{name}: fold {k + 1}/{n} at {time.time() - t0:.0f} s", flush=True)

    group_cv_predictions(traces, labels, groups, fit, n_splits=splits, on_fold=on_fold, cache_dir=out / name)


def score(probs_by_trace: dict[int, np.ndarray], classes, traces, labels, groups) -> dict:
    from thoughtlens.trace.label_eval import per_problem_hits, score_labels

    have = sorted(probs_by_trace)
    pred = [classes[j] for t in have for j in probs_by_trace[t].argmax(1)]
    true = [y for t in have for y in labels[t]]
    s = score_labels(true, pred)
    tags = {t: [classes[j] for j in probs_by_trace[t].argmax(1)] for t in have}
    hits = per_problem_hits(tags, labels, groups, have)
    return {
        "accuracy": s.accuracy,
        "macro_f1": s.macro_f1,
        "n": s.n,
        "traces": len(have),
        "by_problem": {g: float(h.mean()) for g, h in hits.items()},
    }


def read_setting(d: Path, traces, labels, groups, splits: int) -> tuple[list[str], dict[int, np.ndarray]]:
    """The probabilities of the folds finished in `d` (trains nothing): classes, {trace: [n_sentences, n_classes]}."""
    from thoughtlens.trace.label_eval import group_cv_predictions

    preds = group_cv_predictions(traces, labels, groups, None, n_splits=splits, cache_dir=d, only_cached=True)
    have = [t for t, p in enumerate(preds) if p]
    if not have:
        return [], {}
    from thoughtlens.trace.categories import taxonomy_order

    # a fold trained without some category gives it no column: probability 0 there
    classes = sorted({c for t in have for p in preds[t] for c in p}, key=taxonomy_order)
    return classes, {t: np.array([[p.get(c, 0.0) for c in classes] for p in preds[t]]) for t in have}


def merge(out: Path, traces, labels, groups, splits: int) -> dict:
    """Score every setting found under `out`, and the probability average of some ensembles."""
    report: dict = {"n_sentences": sum(map(len, traces)), "settings": {}, "ensembles": {}}
    found = {}
    for d in sorted(p for p in out.iterdir() if p.is_dir()):
        classes, probs = read_setting(d, traces, labels, groups, splits)
        if not probs:
            continue
        found[d.name] = (classes, probs)
        report["settings"][d.name] = {**score(probs, classes, traces, labels, groups), "kwargs": SETTINGS.get(d.name)}
    complete = {n: v for n, v in found.items() if len(v[1]) == len(traces)}
    ensembles = {
        "seeds c1e3 x3": ["c1e3", "c1e3_s1", "c1e3_s2"],
        "seeds c2e3 x2": ["c2e3", "c2e3_s1"],
        "all complete": sorted(complete),
    }
    for name, members in ensembles.items():
        members = [m for m in members if m in complete]
        if len(members) < 2 or len({tuple(complete[m][0]) for m in members}) != 1:
            continue
        avg = {t: np.mean([complete[m][1][t] for m in members], axis=0) for t in range(len(traces))}
        report["ensembles"][name] = {"members": members, **score(avg, complete[members[0]][0], traces, labels, groups)}
    return report


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=None, help="published traces (default ../shared/data/...)")
    p.add_argument("--traces", type=Path, default=None, help="read the labelled sentences from this JSON instead")
    p.add_argument("--export-traces", type=Path, default=None, help="write the labelled sentences as JSON and stop")
    p.add_argument("--out", type=Path, default=REPO / "runs" / "category_sweep")
    p.add_argument("--only", default=",".join(SETTINGS), help="comma-separated settings, in order")
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="settings trained at once (separate processes)")
    p.add_argument("--merge", type=Path, default=None, help="score what is in --out, write the report here")
    p.add_argument("--setting", default=None, help=argparse.SUPPRESS)  # one worker process
    args = p.parse_args(argv)

    traces, labels, groups = load(args)
    if args.export_traces:
        args.export_traces.write_text(json.dumps({"traces": traces, "labels": labels, "groups": groups}))
        print(f"wrote {args.export_traces}: {len(traces)} traces, {sum(map(len, traces))} sentences")
        return 0
    if args.merge:
        report = merge(args.out, traces, labels, groups, args.splits)
        args.merge.write_text(json.dumps(report, indent=1))
        for kind in ("settings", "ensembles"):
            for n, r in report[kind].items():
                print(
                    f"{kind[:-1]} {n}: accuracy {r['accuracy']:.3f}, macro-F1 {r['macro_f1']:.3f} "
                    f"({r['traces']} traces, n={r['n']})"
                )
        return 0
    if args.setting:
        run_setting(args.setting, traces, labels, groups, args.out, args.splits, args.device)
        return 0
    names = [n for n in args.only.split(",") if n]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        raise SystemExit(f"unknown setting(s) {unknown}; choose from {', '.join(SETTINGS)}")
    if args.jobs <= 1:
        for n in names:
            run_setting(n, traces, labels, groups, args.out, args.splits, args.device)
        return 0
    # Several settings at once: a small model leaves a GPU mostly idle, so processes share it.
    base = [sys.executable, __file__, "--out", str(args.out), "--splits", str(args.splits), "--device", args.device]
    base += ["--traces", str(args.traces)] if args.traces else (["--data", str(args.data)] if args.data else [])
    queue, running = list(names), []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `timeout` also stops the workers (finally)
    try:
        while queue or running:
            while queue and len(running) < args.jobs:
                running.append(subprocess.Popen(base + ["--setting", queue.pop(0)], env=os.environ))
            time.sleep(1)
            running = [r for r in running if r.poll() is None]
    finally:
        for r in running:
            r.terminate()
        for r in running:
            r.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
