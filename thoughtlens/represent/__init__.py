"""Representations: per-sentence activations, directions, probes, steering and directional ablation.

One concept per file: sentence_activations.py, directions.py, probes.py, steering.py, ablation.py,
refusal.py (the refusal prompt set and phrase matcher of the small refusal reproduction).
"""
