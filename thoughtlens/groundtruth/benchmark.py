"""The anchors benchmark: run the whole thought-anchors pipeline on a trained toy model's own traces and
score every method against the task's ground truth.

    result = run_benchmark("runs/toy/final", "runs/bench.sqlite", BenchConfig(n_traces=24, n_rollouts=20))
    print(result.table)                      # one row per method: AUROC, 95 % CI over traces, n, coverage

Rows:
  importance metric (every column of the store's metrics table, read by name): AUROC for
    "the answer depends on sentence i" (plan and path steps) vs distractor sentences;
  counterfactual_matrix (the black-box sentence-to-sentence graph, store artifact) and suppression_matrix
    (white-box, store artifact): AUROC over sentence pairs j < k for "k reads j directly" vs pairs with no
    read path at all (pairs that are connected only through other steps are left out: both answers are
    defensible there);
  receiver_score: AUROC of the receiver-head score for the plan sentence vs every other sentence, and
    plan_top_receiver: share of traces where the plan has the highest receiver score.
CIs: percentile bootstrap over traces (the unit of independence), n_boot draws, pooled AUROC per draw.
NaN scores (a metric undefined for a sentence, e.g. counterfactual importance with no dissimilar
resample) are left out and the share kept is reported as `coverage`. Nothing here is tuned per method:
each runs with the library's defaults except where the toy traces force a value (listed in BenchConfig).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from thoughtlens.errors import ConfigError, ThoughtlensError
from thoughtlens.groundtruth.task import (
    Chain,
    TaskConfig,
    generate_chain,
    parse_chain,
    prompt_for,
)
from thoughtlens.sample.base import Sampling

ProgressFn = Callable[[str], None]
NOT_SCORED = ("problem_id", "sentence_index", "n_rollouts", "n_dissimilar", "n_forced")


@dataclass(frozen=True)
class BenchConfig(Sampling):
    """n_traces: base traces analysed (>= 20 for the CIs). n_rollouts, temperature: the anchors job's
    (temperature 0.6 is its default). base_temperature: the base traces are sampled, not greedy, so they
    cover the task's choices. max_new_tokens: a whole chain is ~170 characters. proximity_ignore,
    exclude_layers, top_k: receiver heads on 7-sentence traces of a 3-layer model (library defaults 4, (0,),
    20 assume long traces and deep models)."""

    n_traces: int = 24
    n_rollouts: int = 20
    max_new_tokens: int = 220  # Sampling's field with this job's default (temperature 0.6, top_p 0.95, seed 0)
    base_temperature: float = 1.0
    forced: bool = True
    white_box: bool = True
    proximity_ignore: int = 1
    exclude_layers: tuple[int, ...] = ()
    top_k: int = 4
    n_boot: int = 2000

    def __post_init__(self):
        super().__post_init__()
        if self.n_traces < 2 or self.n_rollouts < 2:
            raise ConfigError(
                f"need n_traces >= 2 and n_rollouts >= 2 (got {self.n_traces}, {self.n_rollouts}); "
                "use >= 20 traces for meaningful CIs"
            )


@dataclass
class BenchResult:
    table: pd.DataFrame  # method, kind, auroc, ci_lo, ci_hi, n_pos, n_neg, coverage, n_traces
    n_sampled: int  # base traces sampled
    n_valid: int  # of which valid chains (the ones analysed)
    run_id: str
    white_box_run_id: str | None
    extra: dict = field(default_factory=dict)

    def to_markdown(self) -> str:
        lines = ["| method | truth | AUROC | 95% CI | pos / neg | coverage |", "|---|---|---|---|---|---|"]
        for r in self.table.itertuples():
            ci = f"[{r.ci_lo:.2f}, {r.ci_hi:.2f}]" if np.isfinite(r.ci_lo) else "-"
            auc = f"{r.auroc:.3f}" if np.isfinite(r.auroc) else "n/a"
            lines.append(f"| {r.method} | {r.truth} | {auc} | {ci} | {r.n_pos} / {r.n_neg} | {r.coverage:.0%} |")
        return "\n".join(lines)


# ---- AUROC with a bootstrap over traces ---------------------------------------------------------------


def auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve = P(score of a random positive > a random negative), ties counting 1/2."""
    from scipy.stats import rankdata

    scores, labels = np.asarray(scores, float), np.asarray(labels, bool)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auroc_by_trace(per_trace: list[tuple[np.ndarray, np.ndarray]], n_boot: int, seed: int) -> dict:
    """Pooled AUROC over traces (NaN scores dropped) with a percentile bootstrap CI over traces."""
    kept = [(s[np.isfinite(s)], y[np.isfinite(s)]) for s, y in per_trace]
    total = sum(len(s) for s, _ in per_trace)
    scores = np.concatenate([s for s, _ in kept]) if kept else np.zeros(0)
    labels = np.concatenate([y for _, y in kept]).astype(bool) if kept else np.zeros(0, bool)
    est = auroc(scores, labels)
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(n_boot if np.isfinite(est) else 0):
        pick = rng.integers(0, len(kept), len(kept))
        a = auroc(np.concatenate([kept[i][0] for i in pick]), np.concatenate([kept[i][1] for i in pick]))
        if np.isfinite(a):
            draws.append(a)
    lo, hi = np.percentile(draws, [2.5, 97.5]) if draws else (np.nan, np.nan)
    return {
        "auroc": est,
        "ci_lo": float(lo),
        "ci_hi": float(hi),
        "n_pos": int(labels.sum()),
        "n_neg": int((~labels).sum()),
        "coverage": len(scores) / total if total else 0.0,
        "n_traces": len(per_trace),
    }


# ---- ground truth of pairs -----------------------------------------------------------------------------


def pair_truth(chain: Chain) -> tuple[np.ndarray, np.ndarray]:
    """([S, S] direct-read labels, [S, S] mask of scored pairs): pair (j, k), j < k, is positive when k reads
    j directly, negative when k does not depend on j at all; transitive-only pairs are masked out."""
    reads = chain.reads
    n = len(reads)
    closure = [set() for _ in range(n)]
    for k in range(n):
        for j in reads[k]:
            closure[k] |= {j} | closure[j]
    label = np.zeros((n, n), bool)
    mask = np.zeros((n, n), bool)
    for k in range(n):
        for j in range(k):
            if j in reads[k]:
                label[j, k] = mask[j, k] = True
            elif j not in closure[k]:
                mask[j, k] = True
    return label, mask


# ---- the benchmark --------------------------------------------------------------------------------------


def sample_base_traces(
    model, n: int, seed: int, temperature: float, task: TaskConfig = TaskConfig(), max_new_tokens: int = 220
) -> tuple[list[tuple[str, str, Chain]], int]:
    """The model's own chains on held-out prompts: [(prompt, completion, parsed chain)] of the first n valid
    ones, and how many were sampled to get them (up to 3n)."""
    from thoughtlens.groundtruth.toy_model import sample_chains

    rng = random.Random(seed)
    prompts = [prompt_for(generate_chain(rng, task, held_out=True).inputs) for _ in range(3 * n)]
    out, sampled = [], 0
    for start in range(0, len(prompts), n):
        batch = prompts[start : start + n]
        texts = sample_chains(model, batch, temperature=temperature, seed=seed + start, max_new_tokens=max_new_tokens)
        for prompt, text in zip(batch, texts):
            sampled += 1
            try:
                chain = parse_chain(prompt, text, task.modulus)
            except ThoughtlensError:
                continue
            if chain.valid and chain.written_answer is not None and chain.plan_index == 0:
                out.append((prompt, text, chain))
            if len(out) == n:
                return out, sampled
    return out, sampled


def _anchors_config(cfg: BenchConfig, model_name: str):
    from thoughtlens.anchors.config import AnchorsConfig

    wanted = dict(
        n_rollouts=cfg.n_rollouts,
        temperature=cfg.temperature,
        top_p=cfg.top_p,
        max_new_tokens=cfg.max_new_tokens,
        base_max_new_tokens=cfg.max_new_tokens,
        forced=cfg.forced,
        seed=cfg.seed,
        label_categories=False,
        model=model_name,
        answer_style="boxed",
    )
    names = {f.name for f in fields(AnchorsConfig)}
    return AnchorsConfig(**{k: v for k, v in wanted.items() if k in names})


def run_benchmark(
    model_dir: str | Path,
    store_path: str | Path,
    cfg: BenchConfig = BenchConfig(),
    on_progress: ProgressFn | None = None,
    anchors_progress=None,
    base_traces: list[tuple[str, str]] | None = None,
) -> BenchResult:
    """Sample base traces, run the anchors job (resumable: same store, same config), the white-box analysis,
    and score everything against the ground truth.

    base_traces: [(prompt, completion)] to analyse instead of the model's own samples (tests use generated
    chains to exercise the plumbing on an untrained model)."""
    from thoughtlens.anchors.config import Problem
    from thoughtlens.anchors.importance.black_box import AnchorsRun, answer_complete
    from thoughtlens.model.load import load
    from thoughtlens.sample.hf import HFSampler
    from thoughtlens.store.run_store import RunStore

    say = on_progress or (lambda msg: None)
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise ThoughtlensError(f"no model directory at {model_dir}: train it first (scripts/train_reasoning_toy.py)")
    model = load(str(model_dir), dtype="float32")
    if base_traces is None:
        say(f"sampling {cfg.n_traces} base traces")
        traces, sampled = sample_base_traces(
            model, cfg.n_traces, cfg.seed, cfg.base_temperature, max_new_tokens=cfg.max_new_tokens
        )
    else:
        traces, sampled = [(p, c, parse_chain(p, c)) for p, c in base_traces], len(base_traces)
    if len(traces) < 2:
        raise ThoughtlensError(f"only {len(traces)} of {sampled} sampled chains are valid: train the model longer")
    problems = [
        Problem(f"t{i:02d}", prompt, prompt, str(chain.answer), base_completion=text)
        for i, (prompt, text, chain) in enumerate(traces)
    ]
    chains = {p.id: c for p, (_, _, c) in zip(problems, traces)}
    store = RunStore(store_path)
    sampler = HFSampler(
        model, batch_size=cfg.n_rollouts, answer_done=lambda text: answer_complete(text) if "}" in text else False
    )
    kwargs = {"on_progress": anchors_progress} if anchors_progress is not None else {}
    try:
        job = AnchorsRun(sampler, store, _anchors_config(cfg, model.name), **kwargs)
    except TypeError:
        job = AnchorsRun(sampler, store, _anchors_config(cfg, model.name))
    say(f"anchors run {job.run_id}: {len(problems)} traces x {cfg.n_rollouts} rollouts per sentence")
    job.run(problems)
    rows, extra = _score_black_box(store, job.run_id, chains, cfg)
    wb_id = None
    if cfg.white_box:
        say("white-box: receiver heads and attention suppression")
        wb_id = f"{job.run_id}-wb"
        rows += _score_white_box(model, store, job.run_id, wb_id, chains, cfg, extra)
    table = pd.DataFrame(rows)
    return BenchResult(table, sampled, len(traces), job.run_id, wb_id, extra)


def score_store(
    store_path: str | Path,
    run_id: str,
    cfg: BenchConfig = BenchConfig(),
    white_box_run_id: str | None = None,
    model_dir: str | Path | None = None,
) -> BenchResult:
    """The table again from a finished run's store, without sampling anything: the chains are parsed back
    from the stored base traces. White-box rows need the model (receiver heads are recomputed; the stored
    suppression matrices are read)."""
    from thoughtlens.store.run_store import RunStore

    store = RunStore(store_path)
    chains = {}
    for pid in store.problems(run_id)["problem_id"]:
        stored = store.trace(run_id, pid)
        if stored is not None:
            chains[pid] = parse_chain(stored["prompt"], stored["completion"])
    if not chains:
        raise ThoughtlensError(f"run '{run_id}' in {store_path} has no base traces: run the benchmark first")
    rows, extra = _score_black_box(store, run_id, chains, cfg)
    if white_box_run_id is not None and model_dir is not None:
        from thoughtlens.model.load import load

        model = load(str(model_dir), dtype="float32")
        rows += _score_white_box(model, store, run_id, white_box_run_id, chains, cfg, extra)
    return BenchResult(pd.DataFrame(rows), len(chains), len(chains), run_id, white_box_run_id, extra)


def _stored_sentences_match(store, run_id: str, pid: str, chain: Chain) -> bool:
    stored = store.trace(run_id, pid)
    texts = [s["text"] for s in stored["sentences"]] if stored else []
    return texts == [s.text() for s in chain.steps]


def _score_black_box(store, run_id: str, chains: dict[str, Chain], cfg: BenchConfig) -> tuple[list[dict], dict]:
    metrics = store.metrics(run_id)
    ok = [pid for pid, c in chains.items() if _stored_sentences_match(store, run_id, pid, c)]
    extra = {"traces_with_matching_sentences": len(ok)}
    rows = []
    names = [c for c in metrics.columns if c not in NOT_SCORED and pd.api.types.is_numeric_dtype(metrics[c])]
    for name in sorted(names):
        per_trace = []
        for pid in ok:
            m = metrics[metrics["problem_id"] == pid].sort_values("sentence_index")
            depends = np.array(chains[pid].depends)
            n = min(len(m), len(depends))
            per_trace.append((m[name].to_numpy(float)[:n], depends[:n]))
        rows.append(
            {
                "method": name,
                "truth": "answer depends on sentence",
                "kind": "importance",
                **auroc_by_trace(per_trace, cfg.n_boot, cfg.seed),
            }
        )
    graph = _pair_rows(store, run_id, "counterfactual_matrix", chains, ok, cfg)
    if graph is not None:
        rows.append(
            {"method": "counterfactual_matrix (black-box graph)", "truth": "k reads j", "kind": "graph", **graph}
        )
    exact = {pid: exact_match_graph(store, run_id, pid, len(chains[pid].steps)) for pid in ok}
    graph = _pair_rows_from(exact, chains, cfg)
    if graph is not None:
        rows.append(
            {"method": "counterfactual_matrix, exact match (option)", "truth": "k reads j", "kind": "graph", **graph}
        )
    return rows, extra


def exact_match_graph(store, run_id: str, pid: str, n: int) -> np.ndarray:
    """The black-box sentence graph with exact text matching instead of MiniLM similarity >= 0.8 (a named
    option, not the paper's): M[i, j] = share of R_{i+1} containing S_j verbatim - the same share of R_i,
    for j > i. MiniLM scores "Let e = b + 3 = 0." and "Let e = b - 3 = 4." as near-identical, which hides
    exactly what this task varies. [n, n], 0 where undefined."""
    stored = store.trace(run_id, pid)
    targets = [s["text"] for s in stored["sentences"]][:n]
    df = store.rollouts(run_id, pid)
    df = df[(df["condition"] == "resampled") & (df["finish_reason"] != "error")]
    rates = []
    for k in range(len(targets) + 1):
        texts = [t for t in df.loc[df["sentence_index"] == k, "text"] if isinstance(t, str)]
        rates.append(np.array([np.mean([t in r for r in texts]) if texts else np.nan for t in targets]))
    m = np.zeros((len(targets), len(targets)))
    for i in range(len(targets) - 1):
        m[i, i + 1 :] = np.nan_to_num(rates[i + 1][i + 1 :] - rates[i][i + 1 :])
    return m


def _pair_rows(store, run_id: str, artifact: str, chains: dict[str, Chain], ids: list[str], cfg: BenchConfig):
    matrices = {pid: store.get_artifact(run_id, artifact, pid, default=None) for pid in ids}
    return _pair_rows_from({k: v for k, v in matrices.items() if v is not None}, chains, cfg)


def _pair_rows_from(matrices: dict, chains: dict[str, Chain], cfg: BenchConfig):
    per_trace = []
    for pid, matrix in matrices.items():
        m = np.asarray(matrix, dtype=float)
        label, mask = pair_truth(chains[pid])
        n = min(m.shape[0], label.shape[0])
        per_trace.append((m[:n, :n][mask[:n, :n]], label[:n, :n][mask[:n, :n]]))
    return auroc_by_trace(per_trace, cfg.n_boot, cfg.seed) if per_trace else None


def _score_white_box(
    model, store, run_id: str, wb_id: str, chains: dict[str, Chain], cfg: BenchConfig, extra: dict
) -> list[dict]:
    from thoughtlens.anchors.attention.white_box import analyze_attention, traces_from_store

    traces = {pid: t for pid, t in traces_from_store(store, run_id).items() if pid in chains}
    result = analyze_attention(
        model,
        traces,
        store=store,
        run_id=wb_id,
        proximity_ignore=cfg.proximity_ignore,
        top_k=cfg.top_k,
        exclude_layers=cfg.exclude_layers,
    )
    ids = list(traces)
    rows = []
    supp = _pair_rows(store, wb_id, "suppression_matrix", chains, ids, cfg)
    if supp is not None:
        rows.append({"method": "suppression_matrix (white-box)", "truth": "k reads j", "kind": "graph", **supp})
    per_trace, top = [], []
    for pid in ids:
        scores = np.asarray(result.traces[pid].receiver_scores, dtype=float)
        is_plan = np.array([s.kind == "plan" for s in chains[pid].steps])[: len(scores)]
        per_trace.append((scores, is_plan))
        finite = np.where(np.isfinite(scores), scores, -np.inf)
        top.append(bool(is_plan[int(np.argmax(finite))]))
    rows.append(
        {
            "method": "receiver_score (white-box)",
            "truth": "sentence is the plan",
            "kind": "receiver",
            **auroc_by_trace(per_trace, cfg.n_boot, cfg.seed),
        }
    )
    extra["plan_top_receiver"] = float(np.mean(top)) if top else float("nan")
    extra["receiver_heads"] = [h.as_dict() for h in result.receiver.top]
    return rows


def save_result(result: BenchResult, path: str | Path, config: BenchConfig | None = None) -> Path:
    """The table and metadata as JSON (NaN -> null)."""
    table = result.table.replace({np.nan: None}).to_dict(orient="records")
    doc = {
        "config": asdict(config) if config else None,
        "n_sampled": result.n_sampled,
        "n_valid": result.n_valid,
        "run_id": result.run_id,
        "white_box_run_id": result.white_box_run_id,
        "extra": result.extra,
        "table": table,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=float))
    return path
