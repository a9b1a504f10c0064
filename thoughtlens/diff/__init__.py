"""Model diffing: what a fine-tune changed, measured on two models that share a tokenizer.

One concept per file:
- models.py        the project's two model pairs (planted, thinking): built once by scripts/make_diff_models.py's
                   recipe, cached, returned as (base_dir, finetuned_dir)
- corpus.py        diffing corpora: a text file, 'gsm8k', the planted evaluation texts (with labelled spans)
- pair.py          loading and checking a pair (same tokenizer, same widths) -> one-line errors otherwise
- kl.py            per-token KL(base || fine-tuned) over a corpus, top disagreeing tokens with contexts
- weights.py       per-module weight differences (Frobenius norm, relative change, effective rank)
- lens.py          activation-difference lens: mean resid difference -> logit lens, steering vector
- swap.py          activation swapping: run A with layer L's activation taken from B
- crosscoder.py    BatchTopK crosscoder with Latent Scaling (paired activations)
"""
