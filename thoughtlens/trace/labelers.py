"""Sentence labellers behind one interface: `label(trace) -> list[list[str]]` (tags per sentence).

Four labellers, each in its own module:
  - "rules":   RuleLabeler (label_rules.py), transparent regular expressions;
  - "learned": LearnedLabeler (label_learned.py), MiniLM + context features, shipped weights (the default);
  - "encoder": EncoderLabeler (label_encoder.py), MiniLM fine-tuned on each sentence with its neighbours;
               weights trained by scripts/train_category_classifier.py --encoder-out FILE (`path=FILE`);
  - "llm":     LLMLabeler (label_llm.py), one call per trace to any OpenAI-compatible endpoint.

    >>> from thoughtlens.trace.labelers import label, get_labeler
    >>> tags = label(trace)                          # learned labeller
    >>> tags = label(trace, get_labeler("rules"))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, Sequence

from thoughtlens.errors import ThoughtlensError
from thoughtlens.trace.categories import validate_tags

if TYPE_CHECKING:
    from thoughtlens.trace.reasoning_trace import ReasoningTrace

LABELERS = ("learned", "rules", "encoder", "llm")


class Labeler(Protocol):
    """Anything that tags the sentences of one trace, in order."""

    name: str

    def label_sentences(self, sentences: Sequence[str]) -> list[list[str]]: ...


def get_labeler(name: str = "learned", **kwargs) -> Labeler:
    """A labeller by name. "llm" needs `client=` (an OpenAIClient) and accepts LLMLabeler's options;
    "encoder" needs `path=` (its weights file)."""
    if name == "learned":
        from thoughtlens.trace.label_learned import LearnedLabeler

        return LearnedLabeler(**kwargs)
    if name == "encoder":
        from thoughtlens.trace.label_encoder import EncoderLabeler

        return EncoderLabeler(**kwargs)
    if name == "rules":
        from thoughtlens.trace.label_rules import RuleLabeler

        return RuleLabeler(**kwargs)
    if name == "llm":
        from thoughtlens.trace.label_llm import LLMLabeler

        if "client" not in kwargs:
            raise ThoughtlensError("the llm labeller needs a client: get_labeler('llm', client=OpenAIClient(base_url))")
        return LLMLabeler(**kwargs)
    raise ThoughtlensError(f"unknown labeller {name!r}; use one of: {', '.join(LABELERS)}")


def label_sentences(sentences: Sequence[str], labeler: Labeler | None = None) -> list[list[str]]:
    """Tags for the sentences of one trace (in order), checked against the taxonomy."""
    labeler = labeler if labeler is not None else get_labeler()
    tags = labeler.label_sentences(list(sentences))
    if len(tags) != len(sentences):
        raise ThoughtlensError(
            f"labeller {labeler.name!r} returned {len(tags)} tag lists for {len(sentences)} sentences; fix the labeller"
        )
    return [validate_tags(t, where=f"labeller {labeler.name!r} output") for t in tags]


def label(trace: "ReasoningTrace", labeler: Labeler | None = None) -> list[list[str]]:
    """Tags for every sentence of a ReasoningTrace: `[[tag, ...], ...]`, one list per `trace.sentences` entry."""
    return label_sentences([s.text for s in trace.sentences], labeler)
