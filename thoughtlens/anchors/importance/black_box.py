"""The thought-anchors job: base trace -> rollouts from every prefix -> per-sentence importance.

Every rollout is committed to the run store the moment it completes, so a run killed at any
point resumes (same store, same run id) by asking only for what is missing. Samplers with a
`deterministic_batch` (the hf backend) always regenerate whole batches, so a resumed run draws
exactly the rollouts an uninterrupted one would have drawn; duplicates are ignored by the store.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext

from thoughtlens.anchors.config import AnchorsConfig, Problem, config_record
from thoughtlens.anchors.importance.budget import BudgetPolicy, PositionStats, importance_ci, next_round
from thoughtlens.anchors.importance.metrics import Outcome, regeneration_curve, sentence_metrics
from thoughtlens.anchors.importance.step_attribution import counterfactual_matrix
from thoughtlens.anchors.outcomes.spec import OutcomeSpec, resolve_outcome
from thoughtlens.errors import ConfigError, TraceError
from thoughtlens.progress import OnProgress, Tracker, note
from thoughtlens.sample.base import (
    Completion,
    Sampler,
    SampleRequest,
    SamplingParams,
)
from thoughtlens.sample.provenance import check_same_source, with_provenance
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.answers import (
    answers_equivalent,
    balanced_content,
    extract_answer,
)
from thoughtlens.trace.prompts import DEFAULT_INSTRUCTION  # noqa: F401  (re-exported: older imports)
from thoughtlens.trace.reasoning_trace import ReasoningTrace
from thoughtlens.trace.split import first_sentence

FORCE_AFTER_THINK = "\n</think>\n\nTherefore, the final answer is \\boxed{"
# The paper's forcing text, verbatim ("answers" included): generate_rollouts.py:generate_rollout.
FORCE_AFTER_THINK_PAPER = "\n</think>\n\nTherefore, the final answers is \\boxed{"
FORCE_NO_THINK = "\n\nTherefore, the final answer is \\boxed{"


def is_thinking(trace: ReasoningTrace, tags: tuple[str, str]) -> bool:
    """True for a reasoning-model trace: the think block is opened in the prompt or the completion."""
    return tags[0] in trace.text


def _forcing_suffix(trace: ReasoningTrace, tags: tuple[str, str], conventions: str = "thoughtlens") -> str:
    if not is_thinking(trace, tags):
        return FORCE_NO_THINK
    return FORCE_AFTER_THINK_PAPER if conventions == "paper" else FORCE_AFTER_THINK


def prefixes(trace: ReasoningTrace, tokenizer=None) -> list[str]:
    """prefix_0..prefix_n (see anchors.importance.metrics): S_k and after removed; the last keeps everything.
    Each ends at a token boundary of the model's own tokenization (ReasoningTrace.rollout_prefix)."""
    if not trace.sentences:
        raise TraceError("the base trace has no sentences to analyse: check max_new_tokens and the prompt")
    return trace.rollout_prefixes(tokenizer)


def answer_complete(text: str, *, thinking: bool = False, close_tag: str = "</think>") -> bool:
    """True once a rollout has stated its final answer and moved past it, so the sampler can stop.

    `text` is what the rollout generated. Rules:
    - thinking=True (the prefix is inside an open think block): nothing inside the think block ends a
      rollout, not even "Maybe it is \\boxed{7}" or "the answer is 7."; it is complete only once
      `close_tag` has been generated and a final answer follows it (by the rules below);
    - a closed \\boxed{...} is complete at its brace;
    - "#### 42" / "the answer is 42" only once a newline or full stop follows (one more digit could still
      arrive; "2." may still become "2.5", so a full stop counts after a non-digit or once a space follows).
    EOS and the token budget end a rollout in any case (the sampler's job).
    """
    if thinking:
        closed = text.find(close_tag)
        if closed < 0:
            return False
        text = text[closed + len(close_tag) :]
    if extract_answer(text) is None:
        return False
    return re.search(r"(\}|\n|\D\.|\.\s)$", text) is not None


def forced_answer_complete(text: str) -> bool:
    """True once a forced answer (the text after the suffix's `\\boxed{`) has closed its braces:
    `-\\frac{5}{12}}` is complete at the last brace, `-\\frac{5}` is not."""
    return balanced_content(text, 0) is not None


def read_forced_answer(text: str) -> str | None:
    """The forced answer: the content up to the `}` that balances the suffix's `\\boxed{` (nested and
    escaped braces kept whole); None when the braces never balance within the token budget."""
    content = balanced_content(text, 0)
    return (content.strip() or None) if content is not None else None


def completion_rule(thinking: bool, close_tag: str = "</think>") -> Callable[[str], bool]:
    """The `answer_done` predicate for the rollouts of a trace (see answer_complete)."""
    return lambda text: answer_complete(text, thinking=thinking, close_tag=close_tag)


def never_done(text: str) -> bool:
    """No early stop: the rollout runs to EOS or its token budget."""
    return False


def rollout_rule(outcome: OutcomeSpec, thinking: bool, close_tag: str = "</think>") -> Callable[[str], bool]:
    """When a rollout may stop early: at its stated answer for the maths outcome (completion_rule); never
    for any other outcome, which reads the whole rollout (the text after the answer may mention X, and
    the paper's whistleblowing / blackmail rollouts run to the end)."""
    return completion_rule(thinking, close_tag) if outcome.is_default else never_done


@contextmanager
def stopping_rule(sampler: Sampler, rule: Callable[[str], bool]):
    """Install `rule` as the sampler's early-stop predicate (samplers that have one), then restore it:
    the job, not the caller, decides when a rollout is complete, so the CLI and a bare HFSampler agree."""
    if not hasattr(sampler, "answer_done"):
        yield
        return
    old = sampler.answer_done
    sampler.answer_done = rule
    try:
        yield
    finally:
        sampler.answer_done = old


class AnchorsRun:
    """Runs (or resumes) one thought-anchors job into a store."""

    def __init__(
        self,
        sampler: Sampler,
        store: RunStore,
        config: AnchorsConfig,
        run_id: str | None = None,
        on_progress: OnProgress | None = None,
        budget: BudgetPolicy | None = None,
        outcome: OutcomeSpec | None = None,
    ):
        try:
            extract_answer("", config.answer_style)  # fail now, not after the first rollout, on a bad style
        except ValueError as e:
            raise TraceError(str(e)) from None
        config = with_provenance(config, sampler)  # remote/vllm: the served model, URL and tokenizer identity
        self.sampler, self.store, self.config = sampler, store, config
        # budget: None = every position gets n_rollouts at once (the paper's, today's behaviour; the stored
        # config and run id are exactly those of a run without the option). Otherwise an adaptive policy
        # (anchors.importance.budget), stored in the config under "budget" and part of the run id.
        self.budget = budget
        # outcome: an OutcomeSpec object (a judge with its client, a callable) for config.outcome; None
        # resolves config.outcome by name (anchors.outcomes.spec).
        if outcome is not None and outcome.spec != config.outcome:
            raise ConfigError(
                f"AnchorsRun(outcome=...) measures {outcome.spec!r} but config.outcome is "
                f"{config.outcome!r}: build the config with outcome={outcome.spec!r}"
            )
        self.outcome = resolve_outcome(outcome or config.outcome)
        config_dict = config_record(config) if budget is None else {**config_record(config), "budget": budget.record()}
        if budget is not None and run_id is None:
            run_id = "anchors-" + hashlib.sha1(json.dumps(config_dict, sort_keys=True).encode()).hexdigest()[:10]
        self.run_id = run_id or config.run_id()
        self.on_progress = on_progress  # receives ProgressEvents (thoughtlens.progress); the library never prints
        # JSON round trip: tuples become lists, exactly as the store will hand the config back on resume.
        stored = next((r["config"] for r in store.runs() if r["run_id"] == self.run_id), None)
        if stored is not None:  # a forced run id: never resume it from another model or tokenizer
            check_same_source(self.run_id, stored, config_dict)
        self.resumed = not store.create_run(self.run_id, json.loads(json.dumps(config_dict)))

    # ---- public ------------------------------------------------------------------------------------

    def run(self, problems: Sequence[Problem]) -> None:
        """Every problem in turn; rollouts of all problems count towards one progress total."""
        bar = Tracker(self.on_progress, "rollouts", "starting")
        for problem in problems:
            self.run_problem(problem, bar)

    def run_problem(self, problem: Problem, bar: Tracker | None = None) -> list[dict]:
        bar = bar or Tracker(self.on_progress, "rollouts", "starting")
        cfg = self.config
        if not problem.prompt.strip():
            raise TraceError(
                f"problem {problem.id} has an empty prompt: pass --problem TEXT (or a base_solution.json "
                "with a prompt) so rollouts have a question to continue from"
            )
        self.store.add_problem(self.run_id, problem.id, problem.text, problem.gt_answer)
        trace = self._base_trace(problem, bar)
        tok = getattr(self.sampler, "tokenizer", None)
        pre = prefixes(trace, tok if getattr(tok, "is_fast", False) else None)
        thinking = is_thinking(trace, cfg.think_tags)
        bar.add_total(len(pre) * cfg.n_rollouts * (2 if cfg.forced else 1))
        bar.describe(f"{problem.id}: {len(trace)} sentences x {cfg.n_rollouts} rollouts")
        params = cfg.params()
        targets = None  # fixed budget: n_rollouts everywhere
        with stopping_rule(self.sampler, rollout_rule(self.outcome, thinking, cfg.think_tags[1])):
            if self.budget is None:
                self._sample(problem, "resampled", pre, params, bar)
            else:
                targets = self._sample_adaptive(problem, pre, params, bar)
        if cfg.forced:
            suffix = _forcing_suffix(trace, cfg.think_tags, cfg.conventions)
            # No stop string: the answer is read up to the brace that balances \boxed{ (nested braces).
            forced_params = cfg.params(max_new_tokens=cfg.forced_max_new_tokens)
            # The paper's forced prompt: the text before S_k with the whitespace after S_{k-1} stripped (never the
            # prompt's own '<think>\n'), then the suffix; the suffix re-tokenizes the boundary anyway.
            forced_texts = [p + suffix for p in trace.rollout_prefixes(None)]
            with stopping_rule(self.sampler, forced_answer_complete):
                self._sample(problem, "forced", forced_texts, forced_params, bar, targets)
        return self._metrics(problem, trace)

    # ---- steps -------------------------------------------------------------------------------------

    def _base_trace(self, problem: Problem, bar: Tracker) -> ReasoningTrace:
        stored = self.store.trace(self.run_id, problem.id)
        if stored is not None:
            completion = stored["completion"]
        elif problem.base_completion is not None:
            completion = problem.base_completion
        else:
            bar.describe(f"{problem.id}: base trace")
            params = self.config.params(
                temperature=max(self.config.base_temperature, 0.0),
                top_p=1.0,
                max_new_tokens=self.config.base_max_new_tokens,
            )
            # Any outcome other than maths correctness may read past the answer: the base trace runs to its end too.
            with nullcontext() if self.outcome.is_default else stopping_rule(self.sampler, never_done):
                (c,) = self.sampler.sample([SampleRequest(problem.prompt, (0,))], params)
            if c.finish_reason == "error":
                raise TraceError(f"could not generate the base trace for {problem.id}: {c.error}")
            completion = c.text
        trace = ReasoningTrace.parse(
            problem.prompt,
            completion,
            think_tags=self.config.think_tags,
            answer_style=self.config.answer_style,
            split_style=self.config.split_style,
        )
        if stored is None:
            tok = getattr(self.sampler, "tokenizer", None)
            ranges = (
                trace.token_ranges(tok)
                if tok is not None and getattr(tok, "is_fast", False)
                else [(None, None)] * len(trace)
            )
            tags = self._tags(trace)
            sentences = [
                dict(index=s.index, start=s.start, end=s.end, text=s.text, tok_start=a, tok_end=b, tags=t)
                for s, (a, b), t in zip(trace.sentences, ranges, tags)
            ]
            self.store.add_trace(
                self.run_id,
                problem.id,
                problem.prompt,
                completion,
                trace.answer,
                self._correct(trace.answer, problem),
                sentences,
            )
        if trace.answer is None:
            note(
                self.on_progress,
                f"{problem.id}: the base trace has no extractable answer; "
                "importance still measures how the answer distribution moves",
            )
        return trace

    def _tags(self, trace: ReasoningTrace) -> list[list[str] | None]:
        """Category tags per sentence (stored with the trace, shown on the page), or None when disabled."""
        if not self.config.label_categories or not trace.sentences:
            return [None] * len(trace)
        from thoughtlens.trace.labelers import label

        return label(trace)

    def _sample_adaptive(self, problem: Problem, texts: list[str], params: SamplingParams, bar: Tracker) -> list[int]:
        """Resampled rollouts in rounds decided by self.budget (anchors.importance.budget.next_round); returns the
        final per-position counts. Each round's targets are stored (artifact budget_rounds) before it is
        sampled, so a run killed mid-round first completes that same round on resume: nothing is lost,
        nothing is drawn twice, and the result equals an uninterrupted run."""
        rounds: list[list[int]] = self.store.get_artifact(self.run_id, "budget_rounds", problem.id, default=[])
        stats = self._position_stats(problem, len(texts))
        bar.advance(sum(s.n for s in stats))  # stored by an earlier attempt
        while True:
            if rounds:
                targets = rounds[-1]
                self._sample(problem, "resampled", texts, params, bar, targets, count_stored=False)
                stats = self._position_stats(problem, len(texts))
                if any(s.n < t for s, t in zip(stats, targets)):  # failed rollouts: retried on the next resume
                    note(self.on_progress, f"{problem.id}: some rollouts failed; the adaptive budget stops here")
                    return [s.n for s in stats]
            extra = next_round(self.budget, stats, self.config.n_rollouts)
            if not extra:
                return [s.n for s in stats]
            rounds.append([s.n + extra.get(k, 0) for k, s in enumerate(stats)])
            self.store.put_artifact(self.run_id, "budget_rounds", rounds, problem.id)
            bar.describe(f"{problem.id}: budget round {len(rounds)}, {sum(extra.values())} more rollouts")

    def _position_stats(self, problem: Problem, n_pos: int) -> list[PositionStats]:
        """Stored resampled rollouts per prefix position (errors excluded): count, answered, correct.
        For an outcome other than maths correctness: count, graded (known), True (so the budget steers on it)."""
        df = self.store.rollouts(self.run_id, problem.id)
        df = df[(df["condition"] == "resampled") & (df["finish_reason"] != "error")]
        if not self.outcome.is_default:
            from thoughtlens.anchors.importance.outcome_grading import outcome_position_stats

            return outcome_position_stats(self.outcome, self.store, self.run_id, problem.id, df, n_pos)
        out = []
        for k in range(n_pos):
            at = df[df["sentence_index"] == k]
            answered = at["answer"].notna()
            correct = at["is_correct"].fillna(False).astype(bool) & answered
            out.append(PositionStats(len(at), int(answered.sum()), int(correct.sum())))
        return out

    def _sample(
        self,
        problem: Problem,
        condition: str,
        texts: list[str],
        params: SamplingParams,
        bar: Tracker,
        targets: Sequence[int] | None = None,
        count_stored: bool = True,
    ) -> None:
        """Request every missing (prefix, sample) pair; commit each completion as it arrives.
        targets: rollouts wanted per position (sample indices 0..targets[k]-1); None = n_rollouts each."""
        done = self.store.done_rollouts(self.run_id, problem.id)
        batch = getattr(self.sampler, "deterministic_batch", None) or 1
        requests, owner = [], []
        for k, text in enumerate(texts):
            n = self.config.n_rollouts if targets is None else int(targets[k])
            missing = {j for j in range(n) if (problem.id, k, condition, j) not in done}
            if count_stored:
                bar.advance(n - len(missing))
            # Whole batches are regenerated so that batched float noise is identical to an uninterrupted run.
            chunks = {j // batch for j in missing}
            wanted = tuple(j for j in range(n) if j // batch in chunks)
            if wanted:
                requests.append(SampleRequest(text, wanted))
                owner.append((k, missing))

        def commit(c: Completion) -> None:
            k, missing = owner[c.prefix_index]
            if c.sample_index not in missing:
                return  # already stored by an earlier, interrupted attempt
            answer = None
            if c.finish_reason != "error":
                answer = self._answer(c.text, condition)
            self.store.add_rollout(
                self.run_id,
                problem.id,
                k,
                condition,
                c.sample_index,
                text=c.text,
                answer=answer,
                is_correct=self._correct(answer, problem),
                n_tokens=c.n_tokens,
                finish_reason=c.finish_reason,
                error=c.error,
            )
            bar.advance(1, c.n_tokens)

        if requests:
            self.sampler.sample(requests, params, on_completion=commit)

    def _answer(self, text: str, condition: str) -> str | None:
        if condition == "forced":  # the forcing suffix opened \boxed{ ; the completion is its content
            return read_forced_answer(text)
        close = self.config.think_tags[1]
        if close in text:  # a reasoning rollout: its final answer follows the think block
            found = extract_answer(text.split(close, 1)[1], self.config.answer_style)
            if found is not None:
                return found
        return extract_answer(text, self.config.answer_style)

    @staticmethod
    def _correct(answer: str | None, problem: Problem) -> bool | None:
        if problem.gt_answer is None:
            return None
        return answer is not None and answers_equivalent(answer, problem.gt_answer)

    def _metrics(self, problem: Problem, trace: ReasoningTrace) -> list[dict]:
        df = self.store.rollouts(self.run_id, problem.id)
        df = df[df["finish_reason"] != "error"]
        n_pos = len(trace) + 1

        def outcomes(condition: str) -> list[list[Outcome]]:
            by_k: list[list[Outcome]] = [[] for _ in range(n_pos)]
            for row in df[df["condition"] == condition].itertuples():
                ans = None if row.answer is None or row.answer != row.answer else row.answer
                correct = None if row.is_correct is None or str(row.is_correct) == "<NA>" else bool(row.is_correct)
                first = (
                    (first_sentence(row.text, self.config.split_style) or None) if condition == "resampled" else None
                )
                by_k[row.sentence_index].append(Outcome(ans, correct, first))
            return by_k

        resampled = outcomes("resampled")
        forced = outcomes("forced") if self.config.forced else None
        sentences = [s.text for s in trace.sentences]
        graded, sims, base_answer = None, None, trace.answer
        if not self.outcome.is_default:  # any outcome (anchors.outcomes.spec): the same metrics of another value
            from thoughtlens.anchors.importance.metrics import all_similarities
            from thoughtlens.anchors.importance.outcome_grading import grade_problem

            graded = grade_problem(
                self.outcome,
                self.store,
                self.run_id,
                problem.id,
                df,
                resampled,
                forced,
                trace.completion,
                self.on_progress,
            )
            resampled, forced = graded.resampled, graded.forced
            sims = all_similarities(sentences, resampled)  # once, for the paper's metrics and the log-odds
            base_answer = None if graded.base_value is None else ("yes" if graded.base_value else "no")
            if graded.summary["n_errors"]:
                note(
                    self.on_progress,
                    f"{problem.id}: the outcome raised on {graded.summary['n_errors']} rollouts "
                    f"(recorded as unknown; first: {graded.summary['first_error']})",
                )
        rows = sentence_metrics(
            sentences,
            resampled,
            forced,
            threshold=self.config.similarity_threshold,
            alpha=self.config.kl_alpha,
            conventions=self.config.conventions,
            similarities=sims,
        )
        if graded is not None:
            from thoughtlens.anchors.importance.outcome_grading import add_outcome_columns

            add_outcome_columns(rows, resampled, forced, sims, self.config.similarity_threshold, graded)
        if self.budget is not None:  # the page shows each sentence's CI next to its rollout count
            _, low, high = importance_ci(self._position_stats(problem, n_pos), self.budget.z)
            for row, lo, hi in zip(rows, low, high):
                row["resampling_importance_accuracy_ci_low"] = float(lo)
                row["resampling_importance_accuracy_ci_high"] = float(hi)
        for i, row in enumerate(rows):
            self.store.put_metrics(self.run_id, problem.id, i, row)
        self.store.put_artifact(
            self.run_id,
            "regeneration_curve",
            regeneration_curve(resampled, base_answer, self.config.conventions),
            problem.id,
        )
        if self.config.counterfactual_matrix:
            texts: list[list[str]] = [[] for _ in range(n_pos)]
            for row in df[df["condition"] == "resampled"].itertuples():
                texts[row.sentence_index].append(row.text if isinstance(row.text, str) else "")
            matrix = counterfactual_matrix(
                sentences, texts, threshold=self.config.similarity_threshold, split_style=self.config.split_style
            )
            self.store.put_artifact(self.run_id, "counterfactual_matrix", matrix.tolist(), problem.id)
        return rows
