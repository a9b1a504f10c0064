"""HookedModel against plain Hugging Face, on tiny random models of every supported architecture."""

from __future__ import annotations

import copy

import numerics
import pytest
import torch
from tiny_models import ARCHS, random_tokens, tiny_hf, tiny_pair

from thoughtlens import HookedModel
from thoughtlens.errors import HookError
from thoughtlens.model.adapters import get_module


@pytest.fixture(params=ARCHS)
def pair(request):
    hf, ref = tiny_pair(request.param)
    plain = copy.deepcopy(hf)  # untouched SDPA model
    return HookedModel(hf), ref, plain


def test_logits_without_hooks_equal_plain_hf_exactly(pair):
    model, _, plain = pair
    tokens = random_tokens()
    with torch.no_grad():
        expected = plain(tokens).logits
    assert torch.equal(model(tokens), expected)


def test_read_only_hooks_everywhere_leave_logits_unchanged(pair):
    model, ref, plain = pair
    tokens = random_tokens()
    seen = []
    with model.hooks([(n, lambda t, hook: seen.append(hook.name)) for n in model.hook_names if "pattern" not in n]):
        logits = model(tokens)
    assert set(seen) == {n for n in model.hook_names if "pattern" not in n}
    with torch.no_grad():
        assert torch.equal(logits, plain(tokens).logits)
    # Pattern hooks switch those layers to the model's own eager attention: equal to HF eager.
    with model.hooks([(n, lambda t, hook: None) for n in model.hook_names]):
        logits = model(tokens)
    with torch.no_grad():
        expected = ref(tokens).logits
    # eager attention written twice: the same operations in another order, one rounding per layer
    numerics.assert_close(logits, expected, dtype=torch.float32, depth=model.cfg.n_layers)


def test_resid_post_equals_hf_hidden_states(pair):
    model, _, plain = pair
    tokens = random_tokens()
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_pre", *model._select("resid_post")])
    with torch.no_grad():
        hidden = plain(tokens, output_hidden_states=True).hidden_states
    n = model.cfg.n_layers
    for L in range(n - 1):  # HF applies the final norm to the last entry
        torch.testing.assert_close(cache["resid_post", L], hidden[L + 1], atol=0, rtol=0)
    torch.testing.assert_close(cache["resid_pre", 0], hidden[0], atol=0, rtol=0)


def test_pattern_equals_hf_eager_attentions(pair):
    model, ref, _ = pair
    tokens = random_tokens()
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith(("hook_pattern", "hook_q", "hook_k")))
    with torch.no_grad():
        attentions = ref(tokens, output_attentions=True).attentions
    for L, expected in enumerate(attentions):
        assert cache["pattern", L].shape == (2, model.cfg.n_heads, tokens.shape[1], tokens.shape[1])
        # probabilities, at the scale of their scores' rounding, after L + 1 layers of float32 rounding
        scale = numerics.pattern_scale(cache["q", L], cache["k", L])
        numerics.assert_close(cache["pattern", L], expected, dtype=torch.float32, depth=L + 1, scale=scale)


def test_zero_ablating_one_head_of_z_equals_zeroing_o_proj_input_by_hand(pair):
    model, _, plain = pair
    tokens, L, h, d = random_tokens(), 1, 2, model.cfg.d_head

    def ablate(z, hook):
        z = z.clone()
        z[:, :, h] = 0
        return z

    ours = model.run_with_hooks(tokens, [(f"blocks.{L}.attn.hook_z", ablate)])

    layer = get_module(plain, model.adapter.layers)[L]
    o_proj = get_module(layer, model.adapter.o_proj)

    def by_hand(module, args):
        x = args[0].clone()
        x[..., h * d : (h + 1) * d] = 0
        return (x,)

    handle = o_proj.register_forward_pre_hook(by_hand)
    try:
        with torch.no_grad():
            expected = plain(tokens).logits
    finally:
        handle.remove()
    assert torch.equal(ours, expected)
    assert not torch.allclose(ours, model(tokens))  # the head mattered


def test_patching_resid_pre_at_one_position_changes_only_later_positions(pair):
    model, _, _ = pair
    tokens, p = random_tokens(), 5
    clean = model(tokens)

    def patch(resid, hook):
        resid = resid.clone()
        resid[:, p] += 3.0
        return resid

    patched = model.run_with_hooks(tokens, [("blocks.1.hook_resid_pre", patch)])
    assert torch.equal(patched[:, :p], clean[:, :p])
    assert (patched[:, p:] - clean[:, p:]).abs().amax(-1).min() > 0


def test_qkv_hooks_are_per_head_with_gqa_shapes(pair):
    model, _, _ = pair
    tokens = random_tokens(pos=7)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.startswith("blocks.0.attn.hook_"))
    c = model.cfg
    assert cache["q", 0].shape == (2, 7, c.n_heads, c.d_head)
    assert cache["k", 0].shape == (2, 7, c.n_kv_heads, c.d_head)
    assert cache["v", 0].shape == (2, 7, c.n_kv_heads, c.d_head)
    assert cache["z", 0].shape == (2, 7, c.n_heads, c.d_head)


def test_editing_v_matches_editing_the_projection_by_hand(pair):
    model, _, plain = pair
    tokens = random_tokens()
    ours = model.run_with_hooks(tokens, [("blocks.0.attn.hook_v", lambda v, hook: v * 0.5)])
    # By hand: halve V inside the projection output (fused projections: only the V slice).
    layer = get_module(plain, model.adapter.layers)[0]
    ad, c = model.adapter, model.cfg
    if ad.qkv_proj:
        proj = get_module(layer, ad.qkv_proj)

        def by_hand(module, args, out):
            q, k, v = ad.split_qkv(out, c)
            return ad.join_qkv(q, k, v * 0.5, c)
    else:
        proj = get_module(layer, ad.v_proj)

        def by_hand(module, args, out):
            return out * 0.5

    handle = proj.register_forward_hook(by_hand)
    try:
        with torch.no_grad():
            expected = plain(tokens).logits
    finally:
        handle.remove()
    assert torch.equal(ours, expected)


def test_resid_mid_edit_equals_same_edit_of_attn_out(pair):
    model, _, _ = pair
    if model.adapter.parallel_residual:
        assert not any("resid_mid" in n for n in model.hook_names)
        return
    tokens = random_tokens()
    delta = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(3))
    a = model.run_with_hooks(tokens, [("blocks.1.hook_resid_mid", lambda r, hook: r + delta)])
    b = model.run_with_hooks(tokens, [("blocks.1.hook_attn_out", lambda r, hook: r + delta)])
    # x + (attn + delta) vs (x + attn) + delta: one rounding apart in layer 1, carried to the logits
    numerics.assert_close(a, b, dtype=torch.float32, depth=model.cfg.n_layers)
    assert not torch.allclose(a, model(tokens))


def test_hooks_are_removed_even_when_the_block_raises(pair):
    model, _, _ = pair
    tokens = random_tokens()
    clean = model(tokens)
    with pytest.raises(RuntimeError):
        with model.hooks(
            [("blocks.0.hook_resid_post", lambda r, hook: r * 0), ("blocks.0.attn.hook_pattern", lambda p, hook: p)]
        ):
            raise RuntimeError("boom")
    assert torch.equal(model(tokens), clean)
    assert all(ctl.idle for ctl in model._controls)


def test_editing_the_pattern_changes_the_output(pair):
    model, _, _ = pair
    tokens = random_tokens()

    def uniform(p, hook):
        causal = torch.ones_like(p).tril()
        return causal / causal.sum(-1, keepdim=True)

    edited = model.run_with_hooks(tokens, [("blocks.0.attn.hook_pattern", uniform)])
    assert not torch.allclose(edited, model(tokens))
    # The first position attends only to itself, so a uniform causal pattern leaves it as it was.
    clean = model(tokens)[:, 0]
    # a one-entry softmax is 1 up to rounding: logits equal to float32 rounding through the layers
    numerics.assert_close(edited[:, 0], clean, dtype=torch.float32, depth=model.cfg.n_layers)


def test_run_with_cache_positions_device_dtype_and_stack(pair):
    model, _, _ = pair
    tokens = random_tokens(pos=9)
    _, full = model.run_with_cache(tokens, names_filter=["blocks.0.hook_resid_post", "blocks.2.attn.hook_pattern"])
    _, last = model.run_with_cache(
        tokens,
        names_filter=["blocks.0.hook_resid_post", "blocks.2.attn.hook_pattern"],
        positions=-1,
        dtype=torch.float64,
    )
    assert last["blocks.0.hook_resid_post"].dtype == torch.float64
    # the same forward, sliced and cast: float32 values are exact in float64, so nothing may differ
    torch.testing.assert_close(
        last["blocks.0.hook_resid_post"], full["blocks.0.hook_resid_post"][:, -1:].double(), atol=0, rtol=0
    )
    torch.testing.assert_close(last["pattern", 2], full["pattern", 2][:, :, -1:].double(), atol=0, rtol=0)
    _, cache = model.run_with_cache(tokens, names_filter="resid_post")
    stacked = cache.stack("resid_post")
    assert stacked.shape == (model.cfg.n_layers, 2, 9, model.cfg.d_model)
    assert torch.equal(stacked[1], cache["blocks.1.hook_resid_post"])
    assert cache.to(dtype=torch.float16)["resid_post", 0].dtype == torch.float16


def test_unknown_hook_name_lists_the_closest_valid_names():
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(HookError, match=r"unknown hook name 'blocks.0.hook_resid_psot'.*blocks.0.hook_resid_post"):
        with model.hooks([("blocks.0.hook_resid_psot", lambda t, h: None)]):
            pass


def test_hook_returning_wrong_shape_names_hook_and_both_shapes():
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(HookError, match=r"blocks.1.hook_resid_post.*\(2, 12\).*\(2, 12, 32\)"):
        model.run_with_hooks(random_tokens(), [("blocks.1.hook_resid_post", lambda r, hook: r.sum(-1))])
    assert all(ctl.idle for ctl in model._controls)


def test_tokens_of_wrong_dtype_get_a_clear_error():
    model = HookedModel(tiny_hf("llama"))
    with pytest.raises(HookError, match="integer ids"):
        model(torch.randn(1, 4))


def test_generate_with_a_steering_hook_changes_tokens_and_is_removed_after():
    model = HookedModel(tiny_hf("llama"))
    prompt = random_tokens(batch=1, pos=6)
    base = model.generate(prompt, max_new_tokens=8)
    with model.hooks([("blocks.1.hook_resid_post", lambda r, hook: r + 20.0 * torch.ones_like(r))]):
        steered = model.generate(prompt, max_new_tokens=8)
    assert steered.shape == base.shape == (1, 14)
    assert not torch.equal(steered, base)
    assert torch.equal(model.generate(prompt, max_new_tokens=8), base)


def test_generate_with_pattern_hook_and_kv_cache_matches_full_forward():
    """A pattern hook during cached decoding sees [batch, head, 1, k] and reproduces greedy decoding."""
    model = HookedModel(tiny_hf("qwen2"))
    prompt = random_tokens(batch=1, pos=5)
    shapes = []
    with model.hooks([("blocks.0.attn.hook_pattern", lambda p, hook: shapes.append(tuple(p.shape)))]):
        out = model.generate(prompt, max_new_tokens=4)
    assert shapes[0] == (1, 4, 5, 5) and shapes[1] == (1, 4, 1, 6)
    assert torch.equal(out, model.generate(prompt, max_new_tokens=4))
