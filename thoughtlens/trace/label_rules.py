"""The transparent rule labeller: ordered regular expressions, the first match wins.

Every decision can be read off `RULES`: (category, pattern, why). Sentences no rule matches fall
back to `active_computation` when they contain maths and to `unknown` otherwise.
"""

from __future__ import annotations

import re
from typing import Sequence

_I = re.IGNORECASE

# Ordered: specific cues (final answer, doubt, checking) before generic ones (so/therefore, maths).
RULES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    (
        "final_answer_emission",
        re.compile(r"\*\*final answer\*\*|\\boxed\{|final answer is|the answer is|i'?ll go with", _I),
        "explicit answer statement",
    ),
    (
        "problem_setup",
        re.compile(
            r"^(okay|ok|alright)\b.*\b(problem|question)\b"
            r"|\b(the problem|the question) (says|asks|states|is asking|gives)\b"
            r"|\bwe(?:'re| are) (given|asked)\b",
            _I,
        ),
        "opens or restates the problem",
    ),
    (
        "self_checking",
        re.compile(
            r"\b(let me (double[- ]?)?(check|verify|confirm|recalculate|recompute)"
            r"|(that|this|it) (is|'s) (correct|right)|yes,? (that|this|it)|to (check|verify|confirm)"
            r"|(same|consistent) (result|answer)|checks out|double-check(ed|ing)?\b(?!.*\?))",
            _I,
        ),
        "verifies an earlier result",
    ),
    (
        "uncertainty_management",
        re.compile(
            r"^(wait|hmm|hold on|but wait|actually|no,|oh)\b"
            r"|\b(i'?m (not sure|confused)|mistake|did i|is that (right|correct)|which (one )?is correct|maybe i"
            r"|alternatively|on second thought|let me (think|reconsider)|that (doesn'?t|can'?t) be)\b"
            r"|\?\s*$",
            _I,
        ),
        "doubt, backtracking or an open question",
    ),
    (
        "plan_generation",
        re.compile(
            r"^(let me|let'?s|i (need|should|will|can|'ll)|i think i|first,|next,|now,? (i|let|we)"
            r"|to (find|solve|compute|calculate|determine|figure)|maybe (i|we) (can|should)|perhaps"
            r"|the (strategy|plan|approach|idea))\b|\b(approach|strategy|method)\b",
            _I,
        ),
        "proposes what to do next",
    ),
    (
        "fact_retrieval",
        re.compile(
            r"\b(i (remember|recall|know)|recall that|by definition|is defined as|the formula (for|is)|formula"
            r"|theorem|identity|property|rule|in general)\b",
            _I,
        ),
        "recalls a fact or formula",
    ),
    (
        "result_consolidation",
        re.compile(
            r"^(so|therefore|thus|hence|that means|this means|which means|putting it (all )?together"
            r"|in total|overall)\b",
            _I,
        ),
        "summarises what has been found",
    ),
)

_MATH = re.compile(r"[0-9=+\-*/^\\×÷≈]")


def rule_label(sentence: str) -> str:
    """The category of one sentence under RULES (first match wins)."""
    text = sentence.strip()
    for name, pattern, _why in RULES:
        if pattern.search(text):
            return name
    return "active_computation" if _MATH.search(text) else "unknown"


class RuleLabeler:
    """Labels sentences with RULES; no model, no network, fully transparent."""

    name = "rules"

    def label_sentences(self, sentences: Sequence[str]) -> list[list[str]]:
        """One tag list per sentence: `[[tag], ...]`."""
        return [[rule_label(s)] for s in sentences]
