"""Sentence splitter for reasoning traces, with exact character offsets.

Conventions follow the Thought Anchors paper's published splits (so our sentence i means
their chunk i): a sentence ends at `.`, `?` or `!` followed by whitespace, or at a blank
line; pieces shorter than `min_chars` are merged into the next one ("Wait." joins the
sentence after it). Unlike the paper's splitter we

- return `(start, end)` offsets into the original text instead of re-joined strings, so the
  whitespace between sentences is never lost;
- keep the final sentence (theirs was dropped in later versions of their code);
- do not cut inside LaTeX math (`$...$`, `$$...$$`, `\\[...\\]`, `\\(...\\)`), after common
  abbreviations ("e.g.", "i.e.", "Dr.", "vs." ...) or after a numbered-list marker ("2.").

Decimals ("3.14") never end a sentence because the period is not followed by whitespace.

`style="paper"` reproduces the paper's `utils.py:split_solution_into_chunks` exactly (with its final
chunk kept, as in the published data): a cut after `.`/`?`/`!` followed by a space or newline, and at
the first newline of every `\\n\\n` (a line holding only spaces is not a paragraph break), including
inside LaTeX and after list markers; pieces shorter than 10 characters (as joined by a space) merged
into the next one, the last into the previous one. Checked against all 20 published traces
(tests/anchors/importance/test_anchors_published_relations.py: 100 % of boundaries, 20 / 20 counts). A merged
chunk's span runs from its first piece to its last, so `text[start:end]` keeps the original whitespace
where the paper joined pieces with one space.
"""

from __future__ import annotations

import re

# `.`/`?`/`!` (possibly repeated, "?!", "...") followed by whitespace ends a sentence.
_SENTENCE_END = re.compile(r"[.?!]+(?=\s)")
# A blank line (possibly holding spaces/tabs) separates paragraphs; cut at its first newline.
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
# Each item of a numbered list ("\n2. ...", "\n  3) ...") starts a new sentence; cut at its newline.
_LIST_ITEM = re.compile(r"\n(?=[ \t]*(?:\*\*)?\d{1,3}[.)][ \t])")
# Inline `$...$` math must close on the same line and its closing `$` must not be followed by a
# digit: that is what tells "costs $5. Then $3" (currency, two sentences) from "$x = 5$" (math).
_MATH = re.compile(
    r"\$\$.+?\$\$|\\\[.+?\\\]|\\\(.+?\\\)|(?<!\\)\$(?!\$)[^$\n]+?(?<!\\)\$(?!\d)",
    re.DOTALL,
)
# A period after one of these words is an abbreviation, not a sentence end.
_ABBREVIATION = re.compile(
    r"(?:^|(?<=[\s(\[]))(?:e\.g|i\.e|cf|vs|et\s+al|approx|Dr|Mr|Mrs|Ms|Prof|Sr|Jr|Fig|Eq|Eqs)\.$",
    re.IGNORECASE,
)
# A line that so far holds only a list marker ("2.", "  b.", "**3.", "iv.") is not a sentence end.
_LIST_MARKER = re.compile(r"[ \t]*(?:[*_#>]+[ \t]*)?(?:\d{1,3}|[a-zA-Z]|[ivxIVX]{1,4})\.")


SPLIT_STYLES = ("thoughtlens", "paper")


def first_sentence(text: str, style: str = "thoughtlens") -> str:
    """The first sentence of `text` ("" when there is none): the replacement a rollout wrote for the
    sentence it resampled, split exactly like base traces.

    style="paper": the paper's `split_solution_into_chunks(rollout)[0]` (generate_rollouts.py), which
    first keeps only the text after `<think>` and before `</think>`, joined as the paper joins merged pieces."""
    sentences = rollout_sentences(text, style)
    return sentences[0] if sentences else ""


def rollout_sentences(text: str, style: str = "thoughtlens") -> list[str]:
    """The sentences of a rollout's reasoning: the text after `<think>` (if any) and before `</think>`
    (if any), split with `style`. "paper" is utils.py:split_solution_into_chunks exactly (what
    step_attribution.py:extract_steps_from_rollout calls); merged pieces are joined with a space there."""
    if "<think>" in text:
        text = text.split("<think>")[1]
    if "</think>" in text:
        text = text.split("</think>")[0]
    if style == "paper":
        return paper_chunks(text)
    return [text[a:b] for a, b in split_sentences(text, style=style)]


def split_sentences(
    text: str, start: int = 0, end: int | None = None, *, min_chars: int = 10, style: str = "thoughtlens"
) -> list[tuple[int, int]]:
    """Split `text[start:end]` into sentences.

    Returns `[(sent_start, sent_end), ...]`: character offsets into `text` (not into the slice),
    each stripped of surrounding whitespace, in order, non-overlapping, covering every
    non-whitespace character of the slice. An all-whitespace slice gives `[]`.
    `min_chars`: pieces shorter than this are merged into the next piece (the last one into the
    previous), as the paper did; 0 disables merging.
    style: "thoughtlens" (the default, cleaner) or "paper" (the published chunking, see the module doc).
    """
    end = len(text) if end is None else end
    if not 0 <= start <= end <= len(text):
        raise ValueError(
            f"bad span [{start}, {end}) for a text of length {len(text)}; pass 0 <= start <= end <= len(text)"
        )
    if style == "paper":
        return [(s, e) for s, e, _ in _paper_spans(text, start, end, min_chars)]
    if style != "thoughtlens":
        raise ValueError(f"unknown split style {style!r}; use 'thoughtlens' (the default) or 'paper'")
    cuts = _cut_points(text, start, end)
    pieces = _stripped_pieces(text, [start, *cuts, end])
    return _merge_short(pieces, min_chars)


def _cut_points(text: str, start: int, end: int) -> list[int]:
    """Sorted offsets in (start, end) where one sentence ends and the whitespace before the next begins."""
    math_spans = [m.span() for m in _MATH.finditer(text, start, end)]
    cuts = {m.end() for m in _SENTENCE_END.finditer(text, start, end) if not _is_false_end(text, m.end())}
    cuts |= {m.start() for m in _PARAGRAPH_BREAK.finditer(text, start, end)}
    cuts |= {m.start() for m in _LIST_ITEM.finditer(text, start, end)}
    return sorted(c for c in cuts if start < c < end and not _inside(c, math_spans))


def _is_false_end(text: str, pos: int) -> bool:
    """True when the punctuation ending at `pos` is an abbreviation or a list marker, not a sentence end."""
    line_start = text.rfind("\n", 0, pos) + 1
    if _LIST_MARKER.fullmatch(text, line_start, pos):
        return True
    word_start = max(line_start, pos - 12)  # abbreviations are short; look back only a few characters
    return _ABBREVIATION.search(text[word_start:pos]) is not None


def _inside(pos: int, spans: list[tuple[int, int]]) -> bool:
    # Strictly inside: a cut right after the closing `$` or `\]` is a real boundary.
    return any(s < pos < e for s, e in spans)


def _stripped_pieces(text: str, bounds: list[int]) -> list[tuple[int, int]]:
    """Pieces between consecutive bounds, each shrunk to exclude surrounding whitespace; empty ones dropped."""
    pieces = []
    for a, b in zip(bounds, bounds[1:]):
        chunk = text[a:b]
        lead = len(chunk) - len(chunk.lstrip())
        trail = len(chunk) - len(chunk.rstrip())
        if lead < len(chunk):
            pieces.append((a + lead, b - trail))
    return pieces


def _merge_short(pieces: list[tuple[int, int]], min_chars: int) -> list[tuple[int, int]]:
    """Merge pieces shorter than `min_chars` into the next piece (the last into the previous)."""
    merged: list[tuple[int, int]] = []
    carry: int | None = None  # start offset of short pieces waiting to be joined to the next one
    for s, e in pieces:
        s = s if carry is None else carry
        if e - s < min_chars:
            carry = s
        else:
            merged.append((s, e))
            carry = None
    if carry is not None:  # trailing short piece(s): join to the previous sentence, or stand alone
        last_end = pieces[-1][1]
        merged[-1:] = [(merged[-1][0], last_end)] if merged else [(carry, last_end)]
    return merged


# ---------------------------------------------------------------- the paper's splitter, with offsets


def paper_chunks(text: str, min_chars: int = 10) -> list[str]:
    """The paper's chunk strings for `text` (utils.py:split_solution_into_chunks, final chunk kept):
    merged pieces are joined with one space, exactly as in their chunks.json."""
    return [joined for _, _, joined in _paper_spans(text, 0, len(text), min_chars)]


def _paper_spans(text: str, start: int, end: int, min_chars: int) -> list[tuple[int, int, str]]:
    """(start, end, paper's chunk string) per chunk of text[start:end], following
    utils.py:split_solution_into_chunks character for character on the stripped slice."""
    piece = text[start:end]
    lead = len(piece) - len(piece.lstrip())
    s0, s1 = start + lead, start + len(piece.rstrip())
    if s0 >= s1:
        return []
    chunks: list[tuple[int, int, str]] = []
    chunk_start = s0
    for i in range(s0, s1):
        paragraph = text.startswith("\n\n", i) and i + 2 <= s1 or text.startswith("\r\n\r\n", i) and i + 4 <= s1
        sentence = i < s1 - 1 and text[i] in ".?!" and text[i + 1] in " \n"
        if (paragraph or sentence) and text[chunk_start : i + 1].strip():
            chunks.append(_stripped(text, chunk_start, i + 1))
            chunk_start = i + 1
    if text[chunk_start:s1].strip():  # the final chunk (commented out in their later code, kept in the data)
        chunks.append(_stripped(text, chunk_start, s1))
    # Merge pieces shorter than min_chars (as joined strings) into the next one, the last into the previous.
    i = 0
    while i < len(chunks):
        if len(chunks[i][2]) < min_chars:
            if i == len(chunks) - 1:
                if i > 0:
                    a, b = chunks[i - 1], chunks[i]
                    chunks[i - 1] = (a[0], b[1], a[2] + " " + b[2])
                    chunks.pop(i)
            else:
                a, b = chunks[i], chunks[i + 1]
                chunks[i + 1] = (a[0], b[1], a[2] + " " + b[2])
                chunks.pop(i)
            if i == 0 and len(chunks) == 1:
                break
        else:
            i += 1
    return chunks


def _stripped(text: str, a: int, b: int) -> tuple[int, int, str]:
    chunk = text[a:b]
    lead = len(chunk) - len(chunk.lstrip())
    stripped = chunk.strip()
    return a + lead, a + lead + len(stripped), stripped
