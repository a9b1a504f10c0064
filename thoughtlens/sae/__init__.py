"""Sparse autoencoders: train, load, splice, evaluate, and read features on chains of thought.

    from thoughtlens.sae import ActivationSource, TrainConfig, build_sae, read_corpus, save_sae, train_saes
    sae = thoughtlens.load_sae("runs/sae_topk")          # SAELens format: cfg.json + sae_weights.safetensors
    with splice_sae(model, sae):                          # reconstruction in place of the activation
        logits = model(tokens)

One file per idea: base.py (interface, config, registry), one file per architecture (standard.py,
topk.py, batchtopk.py, jumprelu.py, matryoshka.py, transcoder.py), activations.py (streaming source),
train.py, evaluate.py, io.py (SAELens format), splice.py, features.py (features on chains of thought),
run_features.py (a stored run's features, for the report page), synthetic.py (ground-truth features). See docs/sae.md.
"""

from __future__ import annotations

# Architectures register themselves on import.
from thoughtlens.sae import batchtopk, jumprelu, matryoshka, standard, topk, transcoder  # noqa: F401
from thoughtlens.sae.activations import ActivationSource, TensorSource, read_corpus
from thoughtlens.sae.base import ARCHITECTURES, SAE, SAEConfig, SAEOutput, build_sae, register_architecture
from thoughtlens.sae.io import load_sae, save_sae
from thoughtlens.sae.splice import splice_sae
from thoughtlens.sae.train import TrainConfig, TrainResult, train_saes

__all__ = [
    "ARCHITECTURES",
    "SAE",
    "SAEConfig",
    "SAEOutput",
    "ActivationSource",
    "TensorSource",
    "TrainConfig",
    "TrainResult",
    "build_sae",
    "load_sae",
    "read_corpus",
    "register_architecture",
    "save_sae",
    "splice_sae",
    "train_saes",
]
