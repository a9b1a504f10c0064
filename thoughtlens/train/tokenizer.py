"""A character-level fast tokenizer for synthetic tasks: one token per character, exact offsets.

Character tokens make every sentence boundary a token boundary, so the anchors pipeline's sentence token
ranges are exact, and `decode` gives back the text character for character (the `Fuse` decoder joins
tokens without the spaces a word-level decoder would insert).
"""

from __future__ import annotations

from thoughtlens.errors import ThoughtlensError

SPECIAL = ("<pad>", "<eos>", "<unk>")


def char_tokenizer(alphabet: str):
    """A PreTrainedTokenizerFast with ids 0..2 = <pad>, <eos>, <unk> and one id per character of `alphabet`.

    It adds no special tokens on its own (no BOS); EOS ends a training sequence and stops sampling.
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set(alphabet))
    if not chars:
        raise ThoughtlensError("the alphabet is empty: pass every character the texts use")
    vocab = {tok: i for i, tok in enumerate(SPECIAL)}
    for ch in chars:
        vocab[ch] = len(vocab)
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")
