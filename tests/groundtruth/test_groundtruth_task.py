"""The planted-anchor task: ground truth checked by executing the program text, independently of task.py."""

from __future__ import annotations

import random
import re

import pytest

from thoughtlens.errors import ThoughtlensError
from thoughtlens.groundtruth.task import (
    ANSWER_PREFIX,
    TaskConfig,
    generate_chain,
    input_pairs,
    is_held_out,
    parse_chain,
)

# ---- an independent interpreter of the chain's text ----------------------------------------------------

LINE = re.compile(r"^(?:Plan:|Let) ([a-z]) = (?:([a-z]) ([-+*]) (\d+)|([a-z])|(\d+))(?: = (\d+))?\.$")


def run_text(prompt: str, completion: str, override: tuple[int, int] | None = None) -> tuple[list[int], int]:
    """Execute the chain text: (value of every step, answer = value of the last +/- step).
    override (i, v): step i's value is forced to v (its random choice changed); later steps recompute."""
    env = {k: int(v) for k, v in re.findall(r"([xy])=(\d)", prompt)}
    values, answer = [], None
    for i, line in enumerate(completion.split("</think>")[0].strip().split("\n")):
        var, src, op, k, alias, const, _ = LINE.match(line).groups()
        if src is not None:
            v = eval(f"({env[src]} {op} {k}) % 10")
        elif alias is not None:
            v = env[alias]
        else:
            v = int(const)
        if override is not None and override[0] == i:
            v = override[1]
        env[var] = v
        values.append(v)
        if op in ("+", "-"):
            answer = v
    return values, answer


def chains(n: int, seed: int = 0, **kw):
    rng = random.Random(seed)
    return [generate_chain(rng, **kw) for _ in range(n)]


def test_answer_dependencies_match_execution():
    """A step is a dependency exactly when changing its value (and re-executing) changes the answer."""
    for chain in chains(60):
        values, answer = run_text(chain.prompt, chain.completion)
        assert answer == chain.answer and values == chain.execute()
        for i, dep in enumerate(chain.depends):
            changed = run_text(chain.prompt, chain.completion, override=(i, (values[i] + 1) % 10))[1] != answer
            assert changed == dep, (chain.completion, i)


def test_direct_reads_match_execution():
    """Step k reads step j directly when changing j's value changes k's value recomputed from its own
    expression, every other step keeping its original value."""
    for chain in chains(40, seed=1):
        values, _ = run_text(chain.prompt, chain.completion)
        lines = chain.completion.split("</think>")[0].strip().split("\n")
        parsed = [LINE.match(line).groups() for line in lines]
        env0 = {k: int(v) for k, v in re.findall(r"([xy])=(\d)", chain.prompt)}
        for k, reads in enumerate(chain.reads):
            var, src, op, const, alias, literal, _ = parsed[k]
            for j in range(k):
                env = {**env0, **{parsed[i][0]: values[i] for i in range(k)}}
                env[parsed[j][0]] = (values[j] + 1) % 10
                if src is not None:
                    v = eval(f"({env[src]} {op} {const}) % 10")
                else:
                    v = env[alias] if alias is not None else int(literal)
                assert (v != values[k]) == (j in reads), (chain.completion, j, k)


def test_plan_and_path_structure_and_answer_text():
    for chain in chains(30, seed=2):
        kinds = [s.kind for s in chain.steps]
        assert kinds[0] == "plan" and kinds.count("path") == 2 and len(kinds) == 7
        assert chain.depends[0] and all(d == (k in ("plan", "path")) for d, k in zip(chain.depends, kinds))
        assert chain.completion.endswith(f"{ANSWER_PREFIX}{chain.answer}}}")
        x, y = chain.inputs["x"], chain.inputs["y"]
        assert (x - y) % 2 == 1


def test_answers_distinct_across_choices():
    """The 2 x 2 x 2 answer choices give 8 distinct answers: fixing any one of them halves the support."""
    for x, y in input_pairs():
        answers = {
            ((x if plan == "x" else y) + s1 * 1 + s2 * 3) % 10 for plan in "xy" for s1 in (1, -1) for s2 in (1, -1)
        }
        assert len(answers) == 8


def test_sampling_diversity_and_held_out_split():
    a, b = chains(50, seed=3), chains(50, seed=4)
    assert len({c.completion for c in a + b}) > 90
    assert {c.steps[0].source for c in a} == {"x", "y"}
    assert not any(is_held_out(c.inputs["x"], c.inputs["y"]) for c in a)
    held = chains(20, seed=5, held_out=True)
    assert all(is_held_out(c.inputs["x"], c.inputs["y"]) for c in held)
    assert sum(is_held_out(*p) for p in input_pairs()) == 10


def test_all_pairs_training_prompts_never_hold_out_prompts():
    """train_pairs="all": every digit pair except the held-out prompts (|x - y| = 5), same-parity ones too."""
    held = {(x, y) for x in range(10) for y in range(10) if abs(x - y) == 5}  # 3x + 7y = 0 mod 5, odd difference
    assert held == {p for p in input_pairs() if is_held_out(*p)}
    seen = {(c.inputs["x"], c.inputs["y"]) for c in chains(3000, seed=8, config=TaskConfig(train_pairs="all"))}
    assert seen == {(x, y) for x in range(10) for y in range(10)} - held  # 90 pairs
    assert {(c.inputs["x"], c.inputs["y"]) for c in chains(1000, seed=8)} == set(input_pairs()) - held
    with pytest.raises(ThoughtlensError, match="train_pairs"):
        TaskConfig(train_pairs="everything")


def test_parse_round_trip_and_validity():
    for chain in chains(20, seed=6):
        parsed = parse_chain(chain.prompt, chain.completion)
        assert parsed.reads == chain.reads and parsed.depends == chain.depends and parsed.valid
        assert parsed.written_answer == chain.answer
    bad = chains(1, seed=7)[0]
    wrong = bad.completion.replace(f"{{{bad.answer}}}", f"{{{(bad.answer + 1) % 10}}}")
    assert not parse_chain(bad.prompt, wrong).valid


def test_bad_input_one_line_errors():
    with pytest.raises(ThoughtlensError, match="n_path"):
        TaskConfig(n_steps=1, n_path=2)
    with pytest.raises(ThoughtlensError, match="path constant"):
        TaskConfig(path_constants=(1,))
    with pytest.raises(ThoughtlensError, match="not a prompt"):
        parse_chain("hello", "Let a = 1.")
    with pytest.raises(ThoughtlensError, match="cannot parse step"):
        parse_chain("x=1 y=2\n<think>\n", "Let a = 1.\nsomething else.")
