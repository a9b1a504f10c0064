"""to_tokens and BOS: a chat template that already writes BOS (as DeepSeek-R1-Distill's does) gets no second one."""

from __future__ import annotations

import torch
from tiny_models import tiny_hf
from transformers import PreTrainedTokenizerFast

from thoughtlens import HookedModel

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
# The shape of DeepSeek-R1-Distill's template: BOS first, then role markers, then an opened think block.
R1_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
)


def _r1_like_tokenizer() -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer that adds BOS like the R1-Distill tokenizer (built in memory)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    words = ["[UNK]", BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "what", "is", "two", "plus", "?"]
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    tok.post_processor = processors.TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", bos_token=BOS, eos_token=EOS)
    fast.add_special_tokens({"additional_special_tokens": ["<｜User｜>", "<｜Assistant｜>"]})
    fast.chat_template = R1_TEMPLATE
    return fast


def test_templated_text_starting_with_bos_gets_exactly_one():
    tok = _r1_like_tokenizer()
    model = HookedModel(tiny_hf("llama"), tokenizer=tok)
    bos = tok.bos_token_id
    assert model.default_prepend_bos  # this tokenizer adds BOS, so plain text gets one
    prompt = model.apply_chat_template("what is two plus two ?")
    assert prompt.startswith(BOS)
    ids = model.to_tokens(prompt)[0].tolist()
    assert ids[0] == bos and ids[1] != bos and ids.count(bos) == 1
    # the tokenizer's own tokenized chat template is the reference
    want = tok.apply_chat_template(
        [{"role": "user", "content": "what is two plus two ?"}], tokenize=True, add_generation_prompt=True
    )
    want = want["input_ids"] if isinstance(want, dict) or hasattr(want, "keys") else want
    assert ids == list(want)
    # plain text still gets BOS; prepend_bos=False still removes nothing that the text itself holds
    assert model.to_tokens("what is two")[0].tolist() == [
        bos,
        *tok("what is two", add_special_tokens=False)["input_ids"],
    ]
    assert model.to_tokens(prompt, prepend_bos=False)[0].tolist() == ids
    # a batch mixing both gets one BOS per row
    batch = model.to_tokens([prompt, "two plus"])
    assert [row.tolist().count(bos) for row in batch] == [1, 1]
    assert isinstance(batch, torch.Tensor)


def test_generate_on_a_list_left_pads_so_each_row_continues_its_own_text():
    tok = _r1_like_tokenizer()
    hf = tiny_hf("llama")
    hf.generation_config.eos_token_id = None
    model = HookedModel(hf, tokenizer=tok)
    texts = ["what is two plus two ?", "two"]
    batch = model.generate(texts, max_new_tokens=4)
    alone = [model.generate(t, max_new_tokens=4) for t in texts]
    assert batch == alone
