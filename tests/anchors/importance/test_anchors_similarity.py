"""MiniLM embeddings, different_trajectories_fraction and overdeterminedness (hand cases + published data)."""

from __future__ import annotations

import json
import math

import numerics
import numpy as np
import pytest
import torch

from thoughtlens.anchors.importance.similarity import (
    EMBEDDING_DIM,
    cosine_similarity,
    different_trajectories_fraction,
    dissimilar_mask,
    embed_sentences,
    overdeterminedness,
    similarities_to,
)

# Unit vectors in float32: a norm or a dot product sums d = 384 terms of a total of about 1, pairwise / in blocks
# (BLAS, torch), so each term meets ~log2(d) roundings.
UNIT_TOL = numerics.tol(torch.float32, 1.0, depth=math.log2(EMBEDDING_DIM))


def test_embeddings_shape_norm_and_dedupe():
    texts = ["A cat is sitting on the mat.", "A kitten rests on a rug.", "A cat is sitting on the mat."]
    vectors = embed_sentences(texts)
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=0, atol=UNIT_TOL)
    np.testing.assert_array_equal(vectors[0], vectors[2])
    alone = embed_sentences(["A kitten rests on a rug."])[0]
    # batching/dedupe does not change a row: the two encodings differ by float32 rounding of a unit vector
    # through MiniLM's 6 layers
    np.testing.assert_allclose(vectors[1], alone, rtol=0, atol=numerics.tol(torch.float32, 1.0, depth=6))
    assert embed_sentences([]).shape == (0, 384)


def test_cosine_matches_the_figure_measured_in_environment_md():
    # ENVIRONMENT.md: "A cat is sitting on the mat." vs "A kitten rests on a rug." gives 0.653.
    sims = similarities_to("A cat is sitting on the mat.", ["A kitten rests on a rug.", "A cat is sitting on the mat."])
    assert sims[0] == pytest.approx(0.653, abs=0.002)
    assert sims[1] == pytest.approx(1.0, abs=UNIT_TOL)


def test_cosine_similarity_by_hand():
    a = np.array([[1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 2.0], [3.0, 0.0]])
    np.testing.assert_allclose(cosine_similarity(a, b), [[0.0, 1.0], [2**-0.5, 2**-0.5]])


def test_missing_resamples_get_nan_similarity():
    sims = similarities_to("We add the numbers.", [None, "   ", "We add the numbers."])
    assert np.isnan(sims[0]) and np.isnan(sims[1]) and sims[2] == pytest.approx(1.0, abs=UNIT_TOL)


def test_dtf_from_given_similarities_by_hand():
    sims = np.array([0.95, 0.79, 0.80, np.nan, 0.1])
    # below 0.8: 0.79 and 0.1 -> 2 of 5 (0.80 is not below; NaN is a missing resample, counted in N only)
    assert different_trajectories_fraction("x", ["a", "b", "c", None, "e"], similarities=sims) == pytest.approx(2 / 5)
    assert different_trajectories_fraction("x", ["a"] * 5, similarities=sims, threshold=0.9) == pytest.approx(3 / 5)
    np.testing.assert_array_equal(dissimilar_mask(sims), [False, True, False, False, True])


def test_dtf_embeds_when_no_similarities_given():
    original = "Let me compute the product of the first two terms."
    resampled = [original, "Let me compute the product of the first two terms.", "I like turtles and sunny beaches."]
    assert different_trajectories_fraction(original, resampled) == pytest.approx(1 / 3)


def test_overdeterminedness_by_hand():
    assert overdeterminedness(["a", "a", "b", "a "]) == pytest.approx(1 - 2 / 4)  # "a " strips to "a"
    assert overdeterminedness(["a", None, "", "b"]) == pytest.approx(0.0)  # missing ones are left out
    assert overdeterminedness(["same"] * 10) == pytest.approx(0.9)


def test_empty_inputs_give_none():
    assert different_trajectories_fraction("x", []) is None
    assert overdeterminedness([]) is None
    assert overdeterminedness([None, " "]) is None


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match="outside \\[-1, 1\\]"):
        dissimilar_mask(np.array([0.5]), threshold=80)
    with pytest.raises(ValueError, match="one per resampled sentence"):
        different_trajectories_fraction("x", ["a", "b"], similarities=np.array([0.1, 0.2, 0.3]))
    with pytest.raises(TypeError, match="drop or replace None"):
        embed_sentences(["fine", None])


# The 3 published traces with the fewest distinct sentences (~5,600 to embed, ~30-60 s on 2 cores).
_SUBSET = [
    "incorrect_base_solution/problem_2189",
    "correct_base_solution/problem_2238",
    "correct_base_solution/problem_2236",
]


@pytest.mark.slow
def test_matches_published_dtf_and_overdeterminedness(published_dir):
    """Recompute both metrics from the published resamples; mean absolute error <= 0.01.

    The last chunk of each trace is skipped: the paper stores a placeholder 0.0 there (its code
    returns early when there is no next chunk)."""
    dtf_err, od_err = [], []
    for name in _SUBSET:
        labeled = json.loads((published_dir / name / "chunks_labeled.json").read_text())
        resampled = json.loads((published_dir / name / "chunks_resampled.json").read_text())
        # One embedding call per trace: large batches embed faster than one small call per chunk.
        texts = list(dict.fromkeys([c["chunk"] for c in labeled] + [r for rs in resampled.values() for r in rs]))
        vector_of = dict(zip(texts, embed_sentences(texts)))
        for chunk in labeled[:-1]:
            resamples = resampled[str(chunk["chunk_idx"])]
            sims = cosine_similarity(vector_of[chunk["chunk"]], np.stack([vector_of[r] for r in resamples]))[0]
            dtf = different_trajectories_fraction(chunk["chunk"], resamples, similarities=sims)
            dtf_err.append(abs(dtf - chunk["different_trajectories_fraction"]))
            od_err.append(abs(overdeterminedness(resamples) - chunk["overdeterminedness"]))
    print(
        f"\nDTF MAE {np.mean(dtf_err):.5f} (max {np.max(dtf_err):.4f}), "
        f"overdeterminedness MAE {np.mean(od_err):.5f} over {len(dtf_err)} chunks"
    )
    assert len(dtf_err) == 59 + 59 + 86
    assert np.mean(dtf_err) <= 0.01
    assert np.mean(od_err) <= 0.01
