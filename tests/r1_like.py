"""A tiny Qwen2 model with a byte-level BPE tokenizer built like DeepSeek-R1-Distill-Qwen's (Qwen2's
pre-tokenizer regex, a BOS the tokenizer adds itself, and a chat template that writes the BOS and opens
<think>), trained in a second on reasoning-style text. No download."""

from __future__ import annotations

from pathlib import Path

BOS, EOS = "<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"
SPECIALS = [BOS, EOS, "<｜User｜>", "<｜Assistant｜>", "<think>", "</think>"]
# Qwen2's tokenizer.json pre-tokenizer pattern.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
    r"\s*[\r\n]+|\s+(?!\S)|\s+"
)
# DeepSeek-R1-Distill's template, reduced to what matters here: BOS first, generation opens <think>.
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}<｜User｜>{{ m['content'] }}"
    "{% else %}<｜Assistant｜>{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<｜Assistant｜><think>\n{% endif %}"
)

CORPUS = [
    "Okay, so I need to add 3 and 5. That gives eight.\n\nThen we subtract two, which gives six. "
    "Let me double check: 3 + 5 = 8.\nAnd 8 - 2 = 6.\n\nSo the answer is 6.\n</think>\n\nThe answer is \\boxed{6}.",
    "Wait, maybe I should check again. Then it is fine.\n\nHmm. First, compute $x = 2$. Then $y = 4$.\n\n"
    "1. Compute the sum.\n2. Divide by two.\n\nTherefore, the final answer is \\boxed{\\frac{5}{12}}.",
]


def r1_like_tokenizer():
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, bos_id)]
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=EOS)
    fast.chat_template = CHAT_TEMPLATE
    return fast


def r1_like_model_dir(out: Path) -> str:
    """A tiny random Qwen2 with the tokenizer above, saved as a model directory."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = r1_like_tokenizer()
    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return str(out)
