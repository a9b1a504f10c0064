"""An indirect-object-identification (IOI) prompt set for patching experiments (Wang et al. 2022).

Clean: "When Mary and John went to the store, John gave a drink to" -> " Mary" (the indirect object).
Corrupt: the same sentence with the second subject swapped ("..., Mary gave a drink to"), so the
answer flips to " John". Every pair has the same token count, so positions align; the metric is
the mean logit difference logit(IO) - logit(S) at the last position.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from thoughtlens.circuits.patching import Metric, logit_diff_metric
from thoughtlens.errors import ThoughtlensError

TEMPLATES = [
    "When {A} and {B} went to the store, {S} gave a drink to",
    "When {A} and {B} went to the park, {S} gave a ball to",
    "After {A} and {B} went to the beach, {S} gave a towel to",
    "When {A} and {B} arrived at the party, {S} gave a gift to",
    "While {A} and {B} were at the office, {S} gave a note to",
    "When {A} and {B} went to the market, {S} handed an apple to",
]
NAMES = [
    "Mary",
    "John",
    "Tom",
    "James",
    "Sarah",
    "Anna",
    "Paul",
    "Mark",
    "Lisa",
    "David",
    "Emma",
    "Kate",
    "Peter",
    "Susan",
    "Mike",
    "Laura",
    "Jack",
    "Alice",
    "Bob",
    "Linda",
    "Steve",
    "Ruth",
    "Adam",
    "Helen",
]


@dataclass
class IOIPrompts:
    """clean, corrupt: tokens [n, pos]; io, s: answer token ids [n] (clean answer io, corrupt answer s)."""

    clean: torch.Tensor
    corrupt: torch.Tensor
    io: torch.Tensor
    s: torch.Tensor
    texts: list[str]

    def metric(self) -> Metric:
        """Mean logit(IO) - logit(S) at the last position."""
        return logit_diff_metric(self.io, self.s)


def ioi_prompts(model, n: int = 24, seed: int = 0) -> IOIPrompts:
    """n clean/corrupt pairs whose names are single tokens and whose token counts all match."""
    tok = model._require_tokenizer()
    names = [x for x in NAMES if len(tok(" " + x, add_special_tokens=False)["input_ids"]) == 1]
    if len(names) < 2:
        raise ThoughtlensError(
            f"{model.name}'s tokenizer splits the IOI names into several tokens: write your own pairs"
        )
    rng = random.Random(seed)
    rows, length = [], None
    for _ in range(50 * n):
        if len(rows) == n:
            break
        template = rng.choice(TEMPLATES)
        a, b = rng.sample(names, 2)
        clean_text, corrupt_text = template.format(A=a, B=b, S=b), template.format(A=a, B=b, S=a)
        clean, corrupt = model.to_tokens(clean_text)[0], model.to_tokens(corrupt_text)[0]
        length = length or len(clean)
        if len(clean) == len(corrupt) == length:  # keep one token length so the batch aligns
            ids = [tok(" " + x, add_special_tokens=False)["input_ids"][0] for x in (a, b)]
            rows.append((clean, corrupt, *ids, clean_text))
    if len(rows) < n:
        raise ThoughtlensError(f"only {len(rows)} IOI pairs share one token length: ask for fewer (n={len(rows)})")
    clean, corrupt, io, s, texts = zip(*rows)
    return IOIPrompts(torch.stack(clean), torch.stack(corrupt), torch.tensor(io), torch.tensor(s), list(texts))
