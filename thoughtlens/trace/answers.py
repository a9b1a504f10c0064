"""Final-answer extraction, normalisation and equivalence for maths reasoning traces.

- `extract_answer(text, style)`: the *last* `\\boxed{...}` (nested braces allowed), GSM8K's
  `#### N`, or any regex. Returns None when there is no answer: a trace without an answer is a
  recorded outcome, not an error.
- `normalize_answer(s)`: a canonical string (drops `$`, `\\text{}`, units, spaces, trailing period,
  leading zeros, "x = " ...).
- `answers_equivalent(a, b)`: equal strings after normalisation, else equal numbers
  (1/2 == 0.5 == \\frac{1}{2}), else sympy proves `a - b == 0` from `parse_latex` (needs
  antlr4-python3-runtime 4.11; guarded by a time limit so a pathological expression cannot hang).
"""

from __future__ import annotations

import re
import threading
from fractions import Fraction

AnswerStyle = str  # "auto" | "boxed" | "gsm8k" | "answer_is"; or pass a compiled re.Pattern

_BOXED_START = re.compile(r"\\(?:boxed|fbox)\s*\{")
_GSM8K = re.compile(r"####\s*([^\n]+)")
# Fallback for small models that never box: "the answer is 42" / "Answer: -3.5" (numbers only,
# so that prose after "answer is" is never taken for an answer).
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)\s*[:=]?\s*\$?\s*(-?\d[\d,]*(?:\.\d+)?(?:/\d+)?)", re.IGNORECASE)

_SYMPY_TIMEOUT_S = 2.0
_SYMPY_MAX_CHARS = 200  # longer strings are not answers worth a symbolic proof


def extract_answer(text: str, style: AnswerStyle | re.Pattern = "auto") -> str | None:
    """The final answer in `text`, or None when there is none.

    style:
      "boxed"     content of the last complete `\\boxed{...}` / `\\fbox{...}` (nested braces kept);
      "gsm8k"     what follows the last `#### ` on its line;
      "answer_is" the number after the last "answer is" / "Answer:";
      "last_number" the last number anywhere (a lenient fallback for small models; not part of "auto");
      "auto"      boxed, else gsm8k, else answer_is;
      a re.Pattern: its last match, group 1 when the pattern has a group, else the whole match.
    The result is stripped but not normalised (see `normalize_answer`).
    """
    if isinstance(style, re.Pattern):
        return _last_regex_match(text, style)
    extractors = {"boxed": _last_boxed, "gsm8k": _last_gsm8k, "answer_is": _last_answer_is, "last_number": _last_number}
    if style == "auto":
        return _last_boxed(text) or _last_gsm8k(text) or _last_answer_is(text)
    if style not in extractors:
        raise ValueError(
            f"unknown answer style {style!r}; "
            "use 'auto', 'boxed', 'gsm8k', 'answer_is', 'last_number' or a compiled re.Pattern"
        )
    return extractors[style](text)


def _last_boxed(text: str) -> str | None:
    """Content of the last `\\boxed{...}` whose braces close; an unclosed (truncated) one is skipped."""
    for match in reversed(list(_BOXED_START.finditer(text))):
        content = balanced_content(text, match.end())
        if content is not None and content.strip():
            return content.strip()
    return None


def balanced_content(text: str, open_end: int) -> str | None:
    """Text from `open_end` (just after a `{`) to its matching `}`; None when it never closes.

    Hand-written because `re` cannot match nested braces; escaped braces (`\\{`) are skipped.
    """
    depth, i = 1, open_end
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2  # skip the escaped character, e.g. \{ or \}
            continue
        depth += (ch == "{") - (ch == "}")
        if depth == 0:
            return text[open_end:i]
        i += 1
    return None


def _last_gsm8k(text: str) -> str | None:
    matches = _GSM8K.findall(text)
    if not matches or not matches[-1].strip():
        return None
    return matches[-1].strip()


def _last_answer_is(text: str) -> str | None:
    matches = _ANSWER_IS.findall(text)
    return matches[-1] if matches else None


_ANY_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")


def _last_number(text: str) -> str | None:
    """The last number in the text: the usual GSM8K fallback for small models that state the result
    in prose ("so the total is 1 + 2 = 3 bolts.")."""
    matches = _ANY_NUMBER.findall(text)
    return matches[-1].rstrip(",") if matches else None


def _last_regex_match(text: str, pattern: re.Pattern) -> str | None:
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    last = matches[-1]
    found = last.group(1) if pattern.groups else last.group(0)
    return found.strip() if found and found.strip() else None


# ---------------------------------------------------------------- normalisation

# Commands whose argument is kept and the command dropped: \text{August} -> August.
_UNWRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")
_SPACING = re.compile(r"\\[,;:!> ]|\\q?quad|~")
_DEGREES = re.compile(r"\^\s*\{?\\circ\}?|°|\\degree")
_NUMBER = re.compile(r"-?(?:\d+\.?\d*|\.\d+)")
# A number followed by a unit word: "5.8 cm", "19 bits", "90 degrees", "6 dollars".
# At least two letters after a space, so "2x" or "3 x" (algebra) is never mistaken for a unit.
_NUMBER_WITH_UNIT = re.compile(r"(-?(?:\d+\.?\d*|\.\d+))\s+[a-zA-Z]{2,}[a-zA-Z ]*\.?")
# "x = 5", "p(5) = -5/12", "k=3": a short left-hand side is a restatement of the variable.
_SHORT_LHS = re.compile(r"[a-zA-Z](?:_\{?\w+\}?)?(?:\([^()=]*\))?")


def normalize_answer(s: str | None) -> str:
    """Canonical form of an answer string, for string comparison. None -> "".

    Steps: strip math delimiters and `\\$`; unwrap `\\text{...}`; `\\dfrac`/`\\tfrac` -> `\\frac`;
    drop `\\left`/`\\right`, spacing commands, degrees and percent signs; `\\frac12` -> `\\frac{1}{2}`;
    thousands separators ("1,234", "2{,}016"); "x = 5" -> "5"; trailing unit words ("5.8 cm");
    trailing period; all whitespace; leading zeros and trailing decimal zeros of plain numbers.
    """
    if s is None:
        return ""
    s = s.strip()
    s = _strip_math_delimiters(s)
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("{,}", ",")
    for _ in range(3):  # nested \text{\textbf{...}} unwraps from the inside out
        s = _UNWRAP.sub(r"\1", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\(?:left|right)(?![a-zA-Z])", "", s)
    s = _SPACING.sub(" ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)  # \frac12 -> \frac{1}{2}
    s = re.sub(r"\\sqrt\s*(\d+)", r"\\sqrt{\1}", s)  # \sqrt2 -> \sqrt{2}
    s = s.strip().rstrip(".").strip()
    s = _drop_short_lhs(s)
    s = _drop_unit(s)
    s = _drop_thousands_separators(s)
    s = re.sub(r"\s+", "", s)
    return _canonical_number(s)


def _strip_math_delimiters(s: str) -> str:
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if s.startswith(left) and s.endswith(right) and len(s) >= len(left) + len(right):
            return s[len(left) : len(s) - len(right)].strip()
    return s


def _drop_short_lhs(s: str) -> str:
    """'x = 5' -> '5'; equations with a long left side ("2x + 1 = 5") are kept whole."""
    if s.count("=") != 1:
        return s
    lhs, rhs = (part.strip() for part in s.split("="))
    return rhs if rhs and _SHORT_LHS.fullmatch(lhs) else s


def _drop_unit(s: str) -> str:
    match = _NUMBER_WITH_UNIT.fullmatch(s)
    return match.group(1) if match else s


def _drop_thousands_separators(s: str) -> str:
    """'2,016,532' -> '2016532' but '1,2' (a tuple or list) is left alone."""
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?", s):
        return s.replace(",", "")
    return s


def _canonical_number(s: str) -> str:
    """'007' -> '7', '5.50' -> '5.5', '3.0' -> '3', '.5' -> '0.5', '-0' -> '0'; non-numbers unchanged."""
    if not _NUMBER.fullmatch(s):
        return s
    value = Fraction(s)
    if value.denominator == 1:
        return str(value.numerator)
    text = s.lstrip("-")
    whole, _, frac = text.partition(".")
    sign = "-" if s.startswith("-") else ""
    return f"{sign}{int(whole or 0)}.{frac.rstrip('0')}"


# ---------------------------------------------------------------- equivalence


def answers_equivalent(a: str | None, b: str | None) -> bool:
    """True when `a` and `b` denote the same answer; None (no answer) never equals anything.

    Tried in order: normalised strings, exact numbers (decimals, a/b, \\frac{a}{b}, percentages
    already stripped), then sympy: `simplify(parse_latex(a) - parse_latex(b)) == 0` under a time
    limit. Any sympy failure (unparseable, timeout) counts as "not shown equal".
    """
    if a is None or b is None:
        return False
    na, nb = normalize_answer(a), normalize_answer(b)
    if not na or not nb:
        return False
    if na == nb:
        return True
    xa, xb = _as_number(na), _as_number(nb)
    if xa is not None and xb is not None:
        return xa == xb
    return _sympy_equal(na, nb)


_FRAC = re.compile(r"(-?)\\frac\{(-?\d+)\}\{(-?\d+)\}")
_SLASH = re.compile(r"(-?\d+(?:\.\d+)?)/(-?\d+(?:\.\d+)?)")


def _as_number(s: str) -> Fraction | None:
    """Exact value of a normalised plain number, a/b or \\frac{a}{b}; None for anything else."""
    try:
        if _NUMBER.fullmatch(s):
            return Fraction(s)
        if m := _SLASH.fullmatch(s):
            return Fraction(m.group(1)) / Fraction(m.group(2))
        if m := _FRAC.fullmatch(s):
            value = Fraction(int(m.group(2)), int(m.group(3)))
            return -value if m.group(1) else value
    except ZeroDivisionError:
        return None
    return None


def _sympy_equal(a: str, b: str) -> bool:
    """Symbolic equality via sympy's LaTeX parser, run in a daemon thread with a time limit."""
    if len(a) > _SYMPY_MAX_CHARS or len(b) > _SYMPY_MAX_CHARS:
        return False
    result: list[bool] = []

    def work() -> None:
        result.append(_sympy_difference_is_zero(a, b))

    # A daemon thread, not signal.alarm: works off the main thread too, and a stuck simplify()
    # is abandoned rather than blocking the caller or interpreter exit.
    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(_SYMPY_TIMEOUT_S)
    return bool(result and result[0])


def _sympy_difference_is_zero(a: str, b: str) -> bool:
    try:
        import sympy
        from sympy.parsing.latex import parse_latex

        diff = parse_latex(a) - parse_latex(b)
        return bool(sympy.simplify(diff) == 0)
    except Exception:  # parse errors, missing antlr runtime, non-arithmetic objects (sets, relations)
        return False
