"""Model diffing: what a fine-tune changed, measured on two models that share a tokenizer.

One concept per file:
- models.py        the project's two model pairs (planted, thinking): built once by scripts/make_diff_models.py's
                   recipe, cached, returned as (base_dir, finetuned_dir)
- corpus.py        diffing corpora: a text file, 'gsm8k', the planted evaluation texts (with labelled spans)
- pair.py          loading and checking a pair (same tokenizer, same widths) -> one-line errors otherwise
- kl.py            per-token KL(base || fine-tuned) over a corpus, top disagreeing tokens with contexts
- weight_diff.py   per-module weight differences (Frobenius norm, relative change, effective rank)
- difference_lens.py activation-difference lens: mean resid difference -> logit lens, steering vector
- swap.py          activation swapping: run A with layer L's activation taken from B
- crosscoder.py    BatchTopK crosscoder with Latent Scaling (paired activations)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from thoughtlens.lazy import lazy_exports

_EXPORTS = {
    "ModelPair": "thoughtlens.diff.pair",
    "load_pair": "thoughtlens.diff.pair",
    "planted_pair": "thoughtlens.diff.models",
    "thinking_pair": "thoughtlens.diff.models",
    "KLResult": "thoughtlens.diff.kl",
    "per_token_kl": "thoughtlens.diff.kl",
    "labelled_kl": "thoughtlens.diff.kl",
    "activation_difference": "thoughtlens.diff.difference_lens",
    "lens_top_tokens": "thoughtlens.diff.difference_lens",
    "steering_vector": "thoughtlens.diff.difference_lens",
    "BatchTopKCrosscoder": "thoughtlens.diff.crosscoder",
    "train_crosscoder": "thoughtlens.diff.crosscoder",
    "load_crosscoder": "thoughtlens.diff.crosscoder",
    "swap_effect_per_layer": "thoughtlens.diff.swap",
    "weight_diff": "thoughtlens.diff.weight_diff",
    "diff_summary": "thoughtlens.diff.summary",
    "finetune": "thoughtlens.diff.finetune",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:  # pragma: no cover
    from thoughtlens.diff.crosscoder import BatchTopKCrosscoder, load_crosscoder, train_crosscoder
    from thoughtlens.diff.difference_lens import activation_difference, lens_top_tokens, steering_vector
    from thoughtlens.diff.finetune import finetune
    from thoughtlens.diff.kl import KLResult, labelled_kl, per_token_kl
    from thoughtlens.diff.models import planted_pair, thinking_pair
    from thoughtlens.diff.pair import ModelPair, load_pair
    from thoughtlens.diff.summary import diff_summary
    from thoughtlens.diff.swap import swap_effect_per_layer
    from thoughtlens.diff.weight_diff import weight_diff
