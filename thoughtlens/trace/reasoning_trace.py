"""ReasoningTrace: a prompt and a completion cut into think / answer spans and sentences.

All offsets are character offsets into `trace.text == prompt + completion`, so a sentence can
be cut out, replaced or resampled without losing a single character of the original:
`text[:s.start] + s.text + text[s.end:] == text` for every sentence `s`.
"""

from __future__ import annotations

import bisect
import itertools
import re
from dataclasses import dataclass

from thoughtlens.errors import TraceError
from thoughtlens.trace.answers import AnswerStyle, extract_answer
from thoughtlens.trace.split import split_sentences


@dataclass(frozen=True)
class Sentence:
    """One sentence of the think span. `[start, end)` are char offsets into `trace.text`;
    `text == trace.text[start:end]` and has no surrounding whitespace."""

    index: int
    start: int
    end: int
    text: str


class ReasoningTrace:
    """A parsed reasoning trace. Build it with `ReasoningTrace.parse(prompt, completion)`.

    Attributes:
      prompt, completion, text (= prompt + completion);
      think_span: (start, end) of the reasoning, without the tags; the whole completion when the
        model uses no think tags; ends at the end of the text when `</think>` never came;
      answer_span: (start, end) of what follows `</think>`, or None when there is no `</think>`;
      sentences: the think span's sentences (see `thoughtlens.trace.split`);
      answer: the extracted final answer, or None when there is none (not an error).
    """

    def __init__(
        self,
        prompt: str,
        completion: str,
        think_span: tuple[int, int],
        answer_span: tuple[int, int] | None,
        sentences: list[Sentence],
        answer: str | None,
    ):
        self.prompt = prompt
        self.completion = completion
        self.text = prompt + completion
        self.think_span = think_span
        self.answer_span = answer_span
        self.sentences = sentences
        self.answer = answer

    @classmethod
    def parse(
        cls,
        prompt: str,
        completion: str,
        *,
        think_tags: tuple[str, str] = ("<think>", "</think>"),
        require_think_close: bool = False,
        answer_style: AnswerStyle | re.Pattern = "auto",
        split_style: str = "thoughtlens",
    ) -> ReasoningTrace:
        """Parse `completion` (the model's output for `prompt`, chat template already applied).

        The think span opens after `think_tags[0]` in the completion, or at the start of the
        completion when the prompt already ends inside an open think tag (R1-style templates)
        or no opening tag appears at all. It closes at `think_tags[1]`.
        The answer is extracted from the answer span, falling back to the whole completion.
        split_style: "thoughtlens" (default) or "paper" (the published chunking, see trace.split).
        Raises TraceError for an empty completion, or a missing close tag when
        `require_think_close=True`.
        """
        if not completion.strip():
            raise TraceError(
                "empty completion: the model produced no text; check the prompt, max_new_tokens and stop strings"
            )
        open_tag, close_tag = think_tags
        base = len(prompt)
        text = prompt + completion
        opened = completion.find(open_tag)
        think_start = base + opened + len(open_tag) if opened >= 0 else base
        closed = completion.find(close_tag, think_start - base)
        if closed < 0 and require_think_close:
            raise TraceError(
                f"no {close_tag!r} in the completion (truncated reasoning?); "
                "raise max_new_tokens or pass require_think_close=False"
            )
        think_end = base + closed if closed >= 0 else len(text)
        answer_span = (think_end + len(close_tag), len(text)) if closed >= 0 else None
        try:
            spans = split_sentences(text, think_start, think_end, style=split_style)
        except ValueError as e:
            raise TraceError(str(e)) from None
        sentences = [Sentence(i, s, e, text[s:e]) for i, (s, e) in enumerate(spans)]
        answer = _find_answer(text, answer_span, completion, answer_style)
        return cls(prompt, completion, (think_start, think_end), answer_span, sentences, answer)

    def _check_index(self, i: int) -> Sentence:
        if not 0 <= i < len(self.sentences):
            raise TraceError(
                f"sentence index {i} out of range: this trace has {len(self.sentences)} sentences; "
                f"use 0..{len(self.sentences) - 1}"
            )
        return self.sentences[i]

    def prefix_before(self, i: int) -> str:
        """`text[:sentences[i].start]`: the prefix to resample S_i from (S_i removed)."""
        return self.text[: self._check_index(i).start]

    def rollout_prefix(self, i: int, tokenizer=None, _encoding=None) -> str:
        """The text to sample rollouts from at prefix position i (0..n; n keeps the whole reasoning).

        For i < n, S_i and everything after it are removed, and the prefix ends where the model's own
        tokenization of the full trace has a token boundary, so the first token a rollout produces is
        one the model could have produced there (never a continuation of a dangling space):
        - with a fast `tokenizer`: the prefix ends at the start of the token holding S_i's first
          character (that token carries the whitespace before S_i, e.g. ' Then', or the whitespace is
          fused into the previous token, e.g. '.\n\n'); position n ends after the token holding
          S_{n-1}'s last character (e.g. '.\n');
        - without one (or where that boundary would cut into the previous sentence): the paper's rule
          (generate_rollouts.py: `prefix_without_chunk.strip()`): whitespace before S_i is dropped,
          except before S_0, where it belongs to the opening of the reasoning (the paper's prompt ends
          in '<think>\n').
        """
        n = len(self.sentences)
        if not 0 <= i <= n or n == 0:
            raise TraceError(f"prefix position {i} out of range: this trace has {n} sentences; use 0..{n}")
        if i == n:
            end = self.sentences[-1].end
            if tokenizer is not None:
                cut = _aligned_cut(
                    tokenizer, self.text, end, _whitespace_end(self.text, end), latest=False, encoding=_encoding
                )
                if cut is not None:
                    return self.text[:cut]
            return self.text[:end]
        s = self.sentences[i]
        floor = self.sentences[i - 1].end if i > 0 else self.think_span[0]
        if tokenizer is not None:
            lo = max(floor, len(self.text[: s.start].rstrip()))
            cut = _aligned_cut(tokenizer, self.text, lo, s.start, latest=True, encoding=_encoding)
            if cut is not None:
                return self.text[:cut]
        if i == 0:
            return self.text[: s.start]
        return self.text[: max(floor, len(self.text[: s.start].rstrip()))]

    def rollout_prefixes(self, tokenizer=None) -> list[str]:
        """`rollout_prefix(k)` for k = 0..n."""
        if not self.sentences:
            raise TraceError("the trace has no sentences to analyse: check max_new_tokens and the prompt")
        encoding = _encode(tokenizer, self.text) if tokenizer is not None else None  # once for all prefixes
        return [self.rollout_prefix(k, tokenizer, encoding) for k in range(len(self.sentences) + 1)]

    def prefix_through(self, i: int) -> str:
        """`text[:sentences[i].end]`: the prefix that keeps S_i."""
        return self.text[: self._check_index(i).end]

    def token_ranges(self, tokenizer) -> list[tuple[int, int]]:
        """`[(tok_start, tok_end), ...]` per sentence, token indices into
        `tokenizer(text, add_special_tokens=False)["input_ids"]`.

        A token belongs to the sentence holding its first non-whitespace character, so ranges
        never overlap and whitespace-only tokens between sentences belong to none. A sentence
        that owns no token (its characters all sit inside a token that starts in an earlier
        sentence) gets an empty range, tok_start == tok_end. Needs a fast tokenizer
        (offset mapping).
        """
        if not getattr(tokenizer, "is_fast", False):
            raise TraceError(
                "token_ranges needs a fast tokenizer (offset mapping); "
                "load it with AutoTokenizer.from_pretrained(..., use_fast=True)"
            )
        offsets = tokenizer(self.text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        anchors = _token_anchors(self.text, offsets)
        return [(bisect.bisect_left(anchors, s.start), bisect.bisect_left(anchors, s.end)) for s in self.sentences]

    def __len__(self) -> int:
        return len(self.sentences)

    def __repr__(self) -> str:
        return (
            f"ReasoningTrace({len(self.sentences)} sentences, answer={self.answer!r}, "
            f"closed={self.answer_span is not None})"
        )


def _find_answer(text: str, answer_span: tuple[int, int] | None, completion: str, style) -> str | None:
    """The answer after </think> if there is one there, else the last one anywhere in the completion."""
    if answer_span is not None:
        found = extract_answer(text[answer_span[0] : answer_span[1]], style)
        if found is not None:
            return found
    return extract_answer(completion, style)


def _whitespace_end(text: str, pos: int) -> int:
    """End of the run of whitespace starting at `pos`."""
    return pos + len(text[pos:]) - len(text[pos:].lstrip())


def _encode(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    """(token ids, char offsets) of `text`, no special tokens added; needs a fast tokenizer."""
    if not getattr(tokenizer, "is_fast", False):
        raise TraceError(
            "token-aligned prefixes need a fast tokenizer (offset mapping); load it with "
            "AutoTokenizer.from_pretrained(..., use_fast=True) or pass tokenizer=None"
        )
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _aligned_cut(tokenizer, text: str, lo: int, hi: int, *, latest: bool, encoding=None) -> int | None:
    """A cut in [lo, hi] (only whitespace lies between lo and hi) at which `text[:cut]` tokenizes to
    exactly the first tokens of `text`, i.e. a token boundary the model itself produced. The latest such
    cut when `latest` (least whitespace left to generate), else the earliest; None when there is none.

    Checked by re-tokenizing, because a token boundary is not always enough: byte-level pre-tokenizers
    split a run of newlines differently at the end of a string ('\n\n' + 'Then' vs '\n\n' at the end)."""
    ids, offsets = encoding if encoding is not None else _encode(tokenizer, text)
    ends = list(itertools.accumulate((b for _, b in offsets), max))  # non-decreasing, for bisect
    lo_t, hi_t = bisect.bisect_left(ends, lo), bisect.bisect_right(ends, hi)  # token ends within [lo, hi]
    candidates = sorted({b for b in ends[lo_t:hi_t]} | ({0} if lo <= 0 <= hi else set()), reverse=latest)
    for cut in candidates:
        m = bisect.bisect_right(ends, cut)  # tokens ending at or before the cut
        if tokenizer(text[:cut], add_special_tokens=False)["input_ids"] == ids[:m]:
            return cut
    return None


def _token_anchors(text: str, offsets: list[tuple[int, int]]) -> list[int]:
    """Per token, the char offset of its first non-whitespace character ([n_tokens]).

    Whitespace-only tokens anchor at their start. Made non-decreasing (running max) so that
    bisect works even where byte-level tokenizers give several tokens the same span.
    """
    anchors, running = [], 0
    for start, end in offsets:
        piece = text[start:end]
        anchor = start + (len(piece) - len(piece.lstrip())) if piece.strip() else start
        running = max(running, anchor)
        anchors.append(running)
    return anchors
