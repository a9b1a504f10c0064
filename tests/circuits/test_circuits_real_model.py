"""The circuit toolkit on the bundled SmolLM2-135M-Instruct (slow: a few forward passes each)."""

from __future__ import annotations

import numerics
import numpy as np
import pytest
import torch
from scipy import stats

import thoughtlens
from thoughtlens.circuits import activation_patching, attribution_patching, dla, induction_scores
from thoughtlens.circuits.ioi import ioi_prompts
from thoughtlens.errors import ModelNotFoundError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def model(request):
    """Both dtypes the loader picks by default (bf16 on CPUs with bf16 units, fp32 elsewhere): the circuits
    are the model's, in either."""
    try:
        return thoughtlens.load(dtype=request.param)
    except ModelNotFoundError as e:
        pytest.skip(str(e))


def test_induction_heads_score_at_least_ten_times_the_median_head(model):
    scores = induction_scores(model, seq_len=30, batch=2)
    assert scores.shape == (30, 9)
    ratio = float(scores.max() / scores.median())
    assert ratio >= 10, f"best induction head is only {ratio:.1f}x the median"
    assert int((scores > 10 * scores.median()).sum()) >= 3  # several heads, not one fluke


def test_ioi_prompts_work_and_atp_tracks_head_patching(model):
    ioi = ioi_prompts(model, n=4)
    metric = ioi.metric()
    layers = list(range(17, 30))  # the strongest IOI heads of this model (bench: L17-L29)
    exact = activation_patching(model, ioi.clean, ioi.corrupt, metric, site="z", per_position=False, layers=layers)
    atp = attribution_patching(model, ioi.clean, ioi.corrupt, metric, site="z", per_position=False, layers=layers)
    assert exact.attrs["clean_metric"] > 1 and exact.attrs["corrupt_metric"] < -1  # the model does IOI
    pearson = stats.pearsonr(atp["value"], exact["value"])[0]
    print(f"AtP vs activation patching on {len(exact)} heads: Pearson {pearson:.3f}")
    assert pearson > 0.7, f"AtP vs activation patching: Pearson {pearson:.2f}"
    top_exact = set(np.argsort(-exact["value"].abs().to_numpy())[:5])
    top_atp = set(np.argsort(-atp["value"].abs().to_numpy())[:10])
    assert len(top_exact & top_atp) >= 3


def test_dla_sums_to_the_logit_difference_on_the_real_model():
    model = thoughtlens.load(dtype=torch.float32)  # fp32: the sum is exact up to float rounding
    prompt = "When Mary and John went to the store, John gave a drink to"
    df = dla(model, prompt, correct=" Mary", wrong=" John")
    # a sum of 301 attributions: rounding at the sum of their |values|, through 30 layers
    numerics.assert_close(
        df["value"].sum(), df.attrs["logit"], dtype=torch.float32, depth=30, scale=float(df["value"].abs().sum())
    )
    assert len(df) == 1 + 30 * (9 + 1)
    assert df.sort_values("value").iloc[-1]["component"] == "L23H3"  # the top IOI head by patching, too
