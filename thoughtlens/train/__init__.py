"""Training tiny models on CPU: a seeded, resumable trainer with log-spaced safetensors checkpoints
(trainer.py), measures over a checkpoint series (checkpoints.py), and grokking (grokking.py)."""
