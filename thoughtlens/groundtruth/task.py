"""A reasoning task with planted anchors: variable-binding chains with a plan step and distractors.

A problem gives two inputs; the chain of thought first *plans* (binds p to one of them, at random),
then writes `n_steps` assignments in which exactly `n_path` "path" steps extend the chain from p and
the rest are distractors. The answer is the last path variable:

    x=3 y=8                              <- prompt (then "<think>")
    Plan: p = y = 8.                     <- plan: random input; read by the first path step
    Let a = 5.                           <- distractor constant (random digit)
    Let b = p - 1 = 7.                   <- path step: random sign, constant 1 (then 3), reads p
    Let c = a * 4 = 0.                   <- distractor that reads a distractor (random source, factor)
    Let d = 2.
    Let e = b + 3 = 0.                   <- second path step, reads b
    Let f = d * 6 = 2.
    </think> Therefore, the final answers is \\boxed{0}

Arithmetic is mod 10. Every step carries a random choice (which input, which sign, which digit, which
source), so resampling any step really changes the continuation; the plan, the sign of each path step and
nothing else decide the answer. The two inputs have different parity and the path constants are 1 and 3,
so the 2 x 2 x 2 (plan, sign, sign) outcomes give 8 distinct answers: fixing any of the three answer
choices halves the answer's support, while fixing a distractor leaves it unchanged.

Ground truth (`Chain.depends`, `Chain.reads`) comes from the program's data flow: step k reads step j
when k's right-hand side names the variable j defined; the answer depends on step i when i is in the
transitive reads of the last path step. `parse_chain` recovers the same from any text in this format
(e.g. the trained model's own traces) and `Chain.execute` recomputes every value from the expressions.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from thoughtlens.errors import ConfigError, TraceError

INPUTS = ("x", "y")
VAR_NAMES = "abcdefghijklmno"
PLAN_VAR = "p"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
# Every chain ends with the anchors job's default forcing text (the paper's, verbatim, "answers is" included:
# anchors.importance.black_box.FORCE_AFTER_THINK_PAPER, from generate_rollouts.py) after the newline that ends the last
# step, so a forced answer at a sentence boundary reads exactly like the chain's own ending.
ANSWER_PREFIX = "\n\n</think>\n\nTherefore, the final answers is \\boxed{"
ALPHABET = "".join(
    sorted(set("xyp" + VAR_NAMES + "0123456789=+-*.:, \n<>/{}\\" + "PlanLetThinkTherefore,thefinalanswerisboxed"))
)


@dataclass(frozen=True)
class TaskConfig:
    """n_steps: assignments after the plan; n_path of them extend the path (constants path_constants[i])."""

    n_steps: int = 6
    n_path: int = 2
    path_constants: tuple[int, ...] = (1, 3)
    modulus: int = 10
    p_distractor_read: float = 0.5  # a distractor reads an earlier distractor (vs. a fresh constant)
    # Which prompts training draws from: "task" = the 40 different-parity pairs that are not held out;
    # "all" = every digit pair except the 10 held-out ones (90: same-parity pairs too, whose 8 outcomes need
    # not be distinct - harmless for training). More distinct prompts teach the plan to *copy* the chosen
    # input instead of recalling it per pair, which is what fails on held-out pairs (see docs/ground_truth.md).
    train_pairs: str = "task"

    def __post_init__(self):
        if self.train_pairs not in ("task", "all"):
            raise ConfigError(f"unknown train_pairs '{self.train_pairs}': use 'task' or 'all'")
        if not 1 <= self.n_path <= self.n_steps <= len(VAR_NAMES):
            raise ConfigError(f"need 1 <= n_path ({self.n_path}) <= n_steps ({self.n_steps}) <= {len(VAR_NAMES)}")
        if len(self.path_constants) < self.n_path:
            raise ConfigError(f"give one path constant per path step: {self.n_path} needed, got {self.path_constants}")


@dataclass(frozen=True)
class Step:
    """One sentence of the chain. kind: plan | path | const | read (a distractor reading a distractor).
    source: the variable the right-hand side names (None for a constant); op in {"+", "-", "*", "="}."""

    kind: str
    var: str
    source: str | None
    op: str
    operand: int | None
    value: int  # as written in the text

    def text(self) -> str:
        if self.kind == "plan":
            return f"Plan: {self.var} = {self.source} = {self.value}."
        if self.source is None:
            return f"Let {self.var} = {self.value}."
        return f"Let {self.var} = {self.source} {self.op} {self.operand} = {self.value}."


@dataclass
class Chain:
    """A problem (inputs) and a chain of steps; step 0 is normally the plan."""

    inputs: dict[str, int]
    steps: list[Step]
    modulus: int = 10
    written_answer: int | None = None  # the answer the text states, when parsed from text
    _defined: dict[str, int] = field(default_factory=dict, repr=False)

    # ---- text ----------------------------------------------------------------------------------

    @property
    def prompt(self) -> str:
        return prompt_for(self.inputs)

    @property
    def completion(self) -> str:
        """The chain as the model writes it (without the EOS token)."""
        body = "\n".join(s.text() for s in self.steps)
        return f"{body}{ANSWER_PREFIX}{self.answer}}}"

    # ---- semantics ---------------------------------------------------------------------------------

    def execute(self) -> list[int]:
        """Every step's value recomputed from its expression (not read from the text)."""
        env = dict(self.inputs)
        values = []
        for s in self.steps:
            if s.source is None:
                v = s.value  # a constant is its own random choice
            elif s.source not in env:
                raise TraceError(f"step '{s.text()}' reads '{s.source}' before it is defined: not a valid chain")
            else:
                v = _apply(env[s.source], s.op, s.operand, self.modulus)
            env[s.var] = v
            values.append(v)
        return values

    @property
    def answer_step(self) -> int:
        """Index of the step whose value is the answer: the last path (+/-) step, else the plan."""
        for i in range(len(self.steps) - 1, -1, -1):
            if self.steps[i].op in "+-":
                return i
        for i, s in enumerate(self.steps):
            if s.kind == "plan":
                return i
        raise TraceError("the chain has neither a path step nor a plan: nothing defines the answer")

    @property
    def answer(self) -> int:
        return self.execute()[self.answer_step]

    @property
    def valid(self) -> bool:
        """Every written value equals its recomputed value, and the stated answer (if any) is right."""
        try:
            values = self.execute()
            ok = all(s.value == v for s, v in zip(self.steps, values))
            return ok and (self.written_answer is None or self.written_answer == values[self.answer_step])
        except TraceError:
            return False

    @property
    def reads(self) -> list[list[int]]:
        """Per step, the indices of the earlier steps it reads directly (its source's defining step)."""
        last_def: dict[str, int] = {}
        out = []
        for i, s in enumerate(self.steps):
            out.append([last_def[s.source]] if s.source in last_def else [])
            last_def[s.var] = i
        return out

    @property
    def depends(self) -> list[bool]:
        """Per step: does the answer depend on it (is it in the transitive reads of the answer step)?"""
        reads, seen, todo = self.reads, set(), [self.answer_step]
        while todo:
            i = todo.pop()
            if i not in seen:
                seen.add(i)
                todo.extend(reads[i])
        return [i in seen for i in range(len(self.steps))]

    @property
    def plan_index(self) -> int | None:
        return next((i for i, s in enumerate(self.steps) if s.kind == "plan"), None)


def _apply(value: int, op: str, operand: int | None, modulus: int) -> int:
    if op == "=":
        return value
    if op == "+":
        return (value + operand) % modulus
    if op == "-":
        return (value - operand) % modulus
    if op == "*":
        return (value * operand) % modulus
    raise TraceError(f"unknown operator {op!r}: use one of = + - *")


def prompt_for(inputs: dict[str, int]) -> str:
    return " ".join(f"{k}={inputs[k]}" for k in INPUTS) + f"\n{THINK_OPEN}\n"


# ---- the generator --------------------------------------------------------------------------------


def input_pairs() -> list[tuple[int, int]]:
    """Every (x, y) of digits with different parity (so x-path and y-path answers never collide): 50 pairs."""
    return [(x, y) for x in range(10) for y in range(10) if (x - y) % 2]


def is_held_out(x: int, y: int) -> bool:
    """The held-out prompts (10 of the 50 pairs), never seen in training."""
    return (3 * x + 7 * y) % 5 == 0


def training_pairs(config: TaskConfig) -> list[tuple[int, int]]:
    """The (x, y) prompts training draws from (config.train_pairs); never a held-out one."""
    pairs = input_pairs() if config.train_pairs == "task" else [(x, y) for x in range(10) for y in range(10)]
    return [p for p in pairs if not ((p[0] - p[1]) % 2 and is_held_out(*p))]


def generate_chain(rng: random.Random, config: TaskConfig = TaskConfig(), *, held_out: bool | None = False) -> Chain:
    """One random problem and chain. held_out: True = held-out prompts only, False = training prompts only
    (`training_pairs`), None = any of the task's 50 pairs."""
    if held_out is False:
        pairs = training_pairs(config)
    else:
        pairs = [p for p in input_pairs() if held_out is None or is_held_out(*p)]
    x, y = rng.choice(pairs)
    inputs = {"x": x, "y": y}
    m = config.modulus
    src = rng.choice(INPUTS)
    steps = [Step("plan", PLAN_VAR, src, "=", None, inputs[src])]
    env = {**inputs, PLAN_VAR: inputs[src]}
    path_at = set(rng.sample(range(config.n_steps), config.n_path))
    last_path, n_done, distractors = PLAN_VAR, 0, []
    for t in range(config.n_steps):
        var = VAR_NAMES[t]
        if t in path_at:
            op, k = rng.choice("+-"), config.path_constants[n_done]
            step = Step("path", var, last_path, op, k, _apply(env[last_path], op, k, m))
            last_path, n_done = var, n_done + 1
        elif distractors and rng.random() < config.p_distractor_read:
            source, k = rng.choice(distractors), rng.randint(2, 9)
            step = Step("read", var, source, "*", k, _apply(env[source], "*", k, m))
            distractors.append(var)
        else:
            step = Step("const", var, None, "=", None, rng.randrange(m))
            distractors.append(var)
        env[var] = step.value
        steps.append(step)
    return Chain(inputs, steps, m)


def iter_chains(seed: int, config: TaskConfig = TaskConfig(), *, held_out: bool | None = False) -> Iterator[Chain]:
    rng = random.Random(seed)
    while True:
        yield generate_chain(rng, config, held_out=held_out)


# ---- parsing any text in the format -----------------------------------------------------------------

_PROMPT = re.compile(r"^x=(\d) y=(\d)\n")
_PLAN = re.compile(r"^Plan: ([a-z]) = ([a-z]) = (\d+)\.$")
_CONST = re.compile(r"^Let ([a-z]) = (\d+)\.$")
_EXPR = re.compile(r"^Let ([a-z]) = ([a-z]) ([-+*]) (\d+) = (\d+)\.$")
_ANSWER = re.compile(r"\\boxed\{(\d+)\}")


def parse_chain(prompt: str, completion: str, modulus: int = 10) -> Chain:
    """A Chain from text in this task's format (raises TraceError on anything else).

    The step kinds are recovered from the text alone: +/- steps are path steps, * steps read distractors.
    Values are kept as written; `Chain.valid` says whether they are right.
    """
    m = _PROMPT.match(prompt)
    if m is None:
        raise TraceError(f"not a prompt of this task (want 'x=D y=D'): {prompt[:30]!r}")
    inputs = {"x": int(m.group(1)), "y": int(m.group(2))}
    body, _, tail = completion.partition(THINK_CLOSE)
    steps = []
    for line in (ln.strip() for ln in body.split("\n")):
        if not line:
            continue
        if (p := _PLAN.match(line)) is not None:
            steps.append(Step("plan", p.group(1), p.group(2), "=", None, int(p.group(3))))
        elif (c := _CONST.match(line)) is not None:
            steps.append(Step("const", c.group(1), None, "=", None, int(c.group(2))))
        elif (e := _EXPR.match(line)) is not None:
            op = e.group(3)
            steps.append(
                Step("path" if op in "+-" else "read", e.group(1), e.group(2), op, int(e.group(4)), int(e.group(5)))
            )
        else:
            raise TraceError(f"cannot parse step {line!r}: not a step of this task")
    if not steps:
        raise TraceError("the chain has no steps")
    boxed = _ANSWER.search(tail)
    return Chain(inputs, steps, modulus, written_answer=int(boxed.group(1)) if boxed else None)
