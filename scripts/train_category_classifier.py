"""Retrain the shipped sentence-category classifier from the published labelled traces, and evaluate it.

    python scripts/train_category_classifier.py [--data ../shared/data/thought-anchors/deepseek-r1-distill-qwen-14b]
        [--out thoughtlens/trace/category_classifier.safetensors] [--cv-splits 10] [--report cv.json]
    python scripts/train_category_classifier.py --encoder [--context 1] [--fold-cache DIR] [--encoder-out FILE]

`--encoder` evaluates the encoder labeller (thoughtlens/trace/label_encoder.py: MiniLM fine-tuned on each
sentence with its neighbours) in the same CV, next to the learned one (about 8 min per fold on 2 cores;
each finished fold is kept in --fold-cache, so an interrupted run resumes), and with --encoder-out trains
it on all traces and writes its weights there; the shipped learned weights are then left alone.

Steps: load DIR/*/problem_*/chunks_labeled.json (first tag of each sentence), embed every sentence with
MiniLM, evaluate the learned labeller with leave-problems-out cross-validation (the correct and the
incorrect trace of a problem are always held out together) next to the rule labeller and the
majority-class baseline, print both confusion matrices, then fit on all traces and write the weights.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from thoughtlens import stats  # noqa: E402
from thoughtlens.anchors.importance.by_category import load_published  # noqa: E402
from thoughtlens.trace.categories import first_tag  # noqa: E402
from thoughtlens.trace.label_eval import (  # noqa: E402
    confusion_markdown,
    cross_validated_predictions,
    group_cv_predictions,
    majority_baseline,
    per_problem_hits,
    score_labels,
)
from thoughtlens.trace.label_learned import WEIGHTS_PATH, embed, save_weights, sentence_features, train_classifier  # noqa: E402
from thoughtlens.trace.label_rules import RuleLabeler  # noqa: E402

DEFAULT_DATA = REPO.parent / "shared" / "data" / "thought-anchors" / "deepseek-r1-distill-qwen-14b"


def load_traces(data: Path):
    """(sentences per trace, first tags per trace, problem group per trace)."""
    df = load_published(data)
    traces, labels, groups = [], [], []
    for trace_id, g in df.groupby("trace_id", sort=True):
        g = g.sort_values("sentence_index")
        traces.append(g["text"].tolist())
        labels.append([first_tag(t) for t in g["tags"]])
        groups.append(trace_id.split("/")[-1])  # "problem_N": both traces of a problem share a group
    return traces, labels, groups


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--out", type=Path, default=WEIGHTS_PATH)
    p.add_argument("--cv-splits", type=int, default=10, help="GroupKFold splits over problems (0 = skip CV)")
    p.add_argument("--report", type=Path, default=None, help="write CV scores and confusion matrices as JSON here")
    p.add_argument("--encoder", action="store_true", help="also cross-validate the fine-tuned encoder labeller")
    p.add_argument("--context", type=int, default=1, help="encoder: neighbouring sentences read on each side")
    p.add_argument("--epochs", type=int, default=3, help="encoder: training epochs")
    p.add_argument(
        "--fold-cache",
        type=Path,
        default=REPO / "runs" / "category_encoder_cv",
        help="encoder: finished folds are kept here (one subfolder per setting)",
    )
    p.add_argument(
        "--cached-only",
        action="store_true",
        help="encoder: train nothing; report on the folds already in --fold-cache (both labellers on those traces)",
    )
    p.add_argument("--encoder-out", type=Path, default=None, help="encoder: train on all traces, write weights here")
    p.add_argument("--device", default="cpu", help="encoder: where to train (cuda on a GPU machine)")
    args = p.parse_args(argv)
    console = Console()

    traces, labels, groups = load_traces(args.data)
    console.print(f"{len(traces)} traces, {sum(map(len, traces))} sentences, {len(set(groups))} problems")
    embeddings = [embed(s) for s in track(traces, description="embedding (MiniLM)", console=console)]
    flat_true = [t for ls in labels for t in ls]
    report: dict = {"n_sentences": len(flat_true), "n_traces": len(traces)}

    if args.cv_splits:
        preds = cross_validated_predictions(traces, labels, embeddings, groups, n_splits=args.cv_splits)
        rules = [t[0] for s in traces for t in RuleLabeler().label_sentences(s)]
        majority, share = majority_baseline(flat_true)
        report["majority"] = {"tag": majority, "accuracy": share}
        scored = [("learned", [t for ps in preds for t in ps]), ("rules", rules)]
        if args.encoder:
            from thoughtlens.trace.label_encoder import train_encoder_classifier

            def fit(train_traces, train_labels):
                clf = train_encoder_classifier(
                    train_traces, train_labels, context=args.context, epochs=args.epochs, device=args.device
                )
                return clf.predict

            def on_fold(k, n):
                console.print(f"encoder: fold {k + 1}/{n} done")

            cache = args.fold_cache / f"context{args.context}_epochs{args.epochs}_splits{args.cv_splits}"
            enc = group_cv_predictions(
                traces,
                labels,
                groups,
                fit,
                n_splits=args.cv_splits,
                on_fold=on_fold,
                cache_dir=cache,
                only_cached=args.cached_only,
            )
            have = [t for t in range(len(traces)) if len(enc[t]) == len(traces[t])]
            if len(have) < len(traces):  # a partial CV: score every labeller on the same held-out traces only
                console.print(
                    f"[yellow]encoder predictions for {len(have)} of {len(traces)} traces (folds in {cache}); "
                    "every score below is over those traces[/]"
                )
                owner = [t for t in range(len(traces)) for _ in traces[t]]  # trace of each flat sentence
                done = set(have)
                keep = [i for i, t in enumerate(owner) if t in done]
                flat_true = [flat_true[i] for i in keep]
                scored = [(name, [pr[i] for i in keep]) for name, pr in scored]
                report["partial"] = {"traces": len(have), "sentences": len(keep)}
            scored.append(("encoder", [x for t in have for x in enc[t]]))
            report["encoder_settings"] = {"context": args.context, "epochs": args.epochs}
            # Paired by problem: the same held-out sentences, labelled by both models.
            by_name = {
                name: per_problem_hits(pr, labels, groups, have) for name, pr in (("encoder", enc), ("learned", preds))
            }
            problems = list(by_name["encoder"])
            hits = {name: list(h.values()) for name, h in by_name.items()}
            report["by_problem"] = {name: {g: float(x.mean()) for g, x in h.items()} for name, h in by_name.items()}
            diff = stats.hierarchical_bootstrap_diff(hits["encoder"], hits["learned"], n_boot=5000)
            test = stats.paired_permutation_test(
                [h.mean() for h in hits["encoder"]], [h.mean() for h in hits["learned"]]
            )
            report["encoder_minus_learned"] = {
                "mean_of_problem_means": diff.estimate,
                "ci95": [diff.ci_low, diff.ci_high],
                "paired_permutation_p": test.p_value,
            }
            console.print(
                f"encoder - learned, mean over problems: {diff.estimate:+.3f} "
                f"[{diff.ci_low:+.3f}, {diff.ci_high:+.3f}], "
                f"paired permutation p = {test.p_value:.3f} ({len(problems)} problems)"
            )
        for name, pred in scored:
            s = score_labels(flat_true, pred)
            report[name] = {
                "accuracy": s.accuracy,
                "macro_f1": s.macro_f1,
                "confusion": s.confusion.to_dict(orient="split"),
            }
            console.print(f"[bold]{name}[/]: first-tag accuracy {s.accuracy:.3f}, macro-F1 {s.macro_f1:.3f} (n={s.n})")
            console.print(confusion_markdown(s.confusion), markup=False)
        console.print(f"majority baseline ({majority}): {share:.3f}")

    if args.encoder_out:
        from thoughtlens.trace.label_encoder import save_encoder_classifier, train_encoder_classifier

        clf = train_encoder_classifier(traces, labels, context=args.context, epochs=args.epochs, device=args.device)
        save_encoder_classifier(clf, args.encoder_out)
        console.print(f"wrote {args.encoder_out} ({args.encoder_out.stat().st_size / 2**20:.1f} MiB)")
    if not args.encoder:
        feats = np.vstack([sentence_features(s, e) for s, e in zip(traces, embeddings)])
        weights = train_classifier(feats, flat_true)
        save_weights(weights, args.out)
        console.print(
            f"wrote {args.out} ({args.out.stat().st_size / 1024:.1f} KiB, classes: {', '.join(weights.classes)})"
        )
    if args.report:
        args.report.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
