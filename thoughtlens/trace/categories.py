"""The sentence taxonomy of Thought Anchors (Bogdan et al. 2025): what job a chain-of-thought sentence does.

Eight functional categories plus `unknown`. Tags are plain strings (the names below), so they
round-trip through JSON, the run store and the published `chunks_labeled.json` files unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from thoughtlens.errors import TraceError


@dataclass(frozen=True)
class Category:
    """One sentence category: its tag, a one-line definition, and example sentences."""

    name: str
    definition: str
    examples: tuple[str, ...]


UNKNOWN = "unknown"

# Order follows the usual flow of a solution (setup -> plan -> work -> check -> answer); tables and
# the transition matrix use this order so they read top to bottom like a trace.
TAXONOMY: tuple[Category, ...] = (
    Category(
        "problem_setup",
        "Restates or parses the problem: what is given, what is asked, constraints.",
        (
            "Okay, so I have this problem where I need to find the coefficient of a^2b^2.",
            "And I need to give the answer to the nearest hundredth.",
        ),
    ),
    Category(
        "plan_generation",
        "Decides what to do next: proposes a strategy, method or sub-goal, without carrying it out.",
        (
            "Let me try using the formula for exponents.",
            "So I need to subtract the arrangements where the green plates are adjacent from the total.",
        ),
    ),
    Category(
        "fact_retrieval",
        "Recalls a definition, formula, theorem or given value from memory or from the problem.",
        (
            "I remember that the sum of the angles of a triangle is 180 degrees.",
            "The binomial coefficient is defined as n! / (k! (n-k)!).",
        ),
    ),
    Category(
        "active_computation",
        "Carries out a step of work: algebra, arithmetic, substitution, counting.",
        ("Level 4: 3*(1 + 48) = 3*49 = 147", "0.0001 < 1/(k pi) < 0.001"),
    ),
    Category(
        "uncertainty_management",
        "Expresses doubt, notices a possible error, backtracks, or weighs alternatives.",
        ("Wait, but let me think again.", "Hmm, which one is correct?"),
    ),
    Category(
        "result_consolidation",
        "Collects or summarises intermediate results into a conclusion to build on.",
        ("So, Q(x) has roots at x = 1, 2, 3, 4.", "Therefore, the binary number must be 20 bits long."),
    ),
    Category(
        "self_checking",
        "Verifies an earlier step or result (recomputes, checks consistency) and reports the check.",
        ("Let me check that again.", "Yes, that's correct."),
    ),
    Category(
        "final_answer_emission",
        "States the final answer of the problem.",
        ("**Final Answer** The value is \\boxed{-5/12}.", "So, the answer is 24/5."),
    ),
)

CATEGORIES: tuple[str, ...] = tuple(c.name for c in TAXONOMY)
ALL_TAGS: tuple[str, ...] = CATEGORIES + (UNKNOWN,)
_BY_NAME = {c.name: c for c in TAXONOMY}


def taxonomy_order(tag: str) -> int:
    """Sort key: a tag's place in the taxonomy (tags outside it, e.g. "unknown", last)."""
    return CATEGORIES.index(tag) if tag in CATEGORIES else len(CATEGORIES)


def category(name: str) -> Category:
    """The Category named `name`; a TraceError naming the valid tags otherwise."""
    if name not in _BY_NAME:
        raise TraceError(f"unknown sentence category {name!r}; use one of: {', '.join(CATEGORIES)}")
    return _BY_NAME[name]


def validate_tags(tags: Iterable[str], *, where: str = "tags") -> list[str]:
    """Return `tags` as a list, or raise TraceError naming the first tag outside the taxonomy and where it was."""
    out = list(tags)
    for tag in out:
        if tag not in ALL_TAGS:
            raise TraceError(f"unknown sentence category {tag!r} in {where}; use one of: {', '.join(ALL_TAGS)}")
    return out


def first_tag(tags: Sequence[str] | None) -> str:
    """The primary (first) tag of a sentence, `unknown` when it has none."""
    return tags[0] if tags else UNKNOWN
