"""Public interventions (thoughtlens.model.interventions) on the bundled SmolLM2-135M-Instruct, fp32.

Each intervention is checked against an independent computation on a plain Hugging Face copy of the
same weights (raw PyTorch forward hooks, an explicit additive 4D attention mask), in a forward pass,
inside `generate`, inside the HF sampler, and nested with the others.
"""

from __future__ import annotations

import contextlib

import numerics
import numpy as np
import pytest
import torch
from torch import nn

import thoughtlens
from thoughtlens.anchors.attention.suppression import suppression_matrix
from thoughtlens.errors import HookError, ModelNotFoundError
from thoughtlens.model.interventions import add_direction, block_keys, observe_attention, project_out, splice

pytestmark = pytest.mark.slow

TEXT = (
    "Let me think. First I add the two numbers. Then I check the sum again. Wait, that is wrong. So the answer is nine."
)
PROMPT = "The capital of France is"
N_NEW = 5


@pytest.fixture(scope="module")
def model():
    try:
        return thoughtlens.load(dtype=torch.float32)
    except ModelNotFoundError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="module")
def ref(smol_dir):
    """The same weights as plain HF with eager attention: no thoughtlens code in its forward."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smol_dir, dtype=torch.float32, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def tokens(model):
    return model.to_tokens(TEXT)


def _unit(d: int, seed: int) -> torch.Tensor:
    v = torch.randn(d, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


def _assert_logits_close(got: torch.Tensor, want: torch.Tensor) -> None:
    """Two fp32 forwards of the same edit that differ only in the order of their operations: float32 rounding at
    the logits' magnitude, through the model's 30 layers."""
    numerics.assert_close(got, want, dtype=torch.float32, depth=30)


# ---- independent reference: raw hooks on the plain HF model ------------------------------------------------


class _RefEdits:
    """Raw PyTorch hooks on `ref` reproducing interventions by hand, plus an explicit attention mask.

    add: (layer, vector, first_position) -> layer output[:, p >= first] += vector
    project: (layer, Q [k, d] orthonormal) -> layer output -= (out @ Q^T) Q
    mlp_scale: (layer, factor) -> MLP output *= factor (a splice of a scaling module)
    hidden_keys: key positions hidden from every query in every layer
    """

    def __init__(self, ref, add=None, project=None, mlp_scale=None, hidden_keys=()):
        self.ref, self.add, self.project, self.mlp_scale, self.hidden = ref, add, project, mlp_scale, list(hidden_keys)

    def logits(self, ids: torch.Tensor) -> torch.Tensor:
        layers, handles = self.ref.model.layers, []
        if self.add is not None:
            L, v, first = self.add

            def add_hook(m, a, out):
                h = out[0] if isinstance(out, tuple) else out
                h = h.clone()
                h[:, first:] += v
                return (h, *out[1:]) if isinstance(out, tuple) else h

            handles.append(layers[L].register_forward_hook(add_hook))
        if self.project is not None:
            L, q = self.project

            def proj_hook(m, a, out):
                h = out[0] if isinstance(out, tuple) else out
                h = h - (h @ q.T) @ q
                return (h, *out[1:]) if isinstance(out, tuple) else h

            handles.append(layers[L].register_forward_hook(proj_hook))
        if self.mlp_scale is not None:
            L, f = self.mlp_scale
            handles.append(layers[L].mlp.register_forward_hook(lambda m, a, out: out * f))
        n = ids.shape[1]
        lowest = torch.finfo(torch.float32).min
        mask = torch.full((n, n), lowest).triu(1)
        if self.hidden:
            mask[:, [k for k in self.hidden if k < n]] = lowest
        try:
            with torch.no_grad():
                return self.ref(ids, attention_mask=mask[None, None]).logits
        finally:
            for h in handles:
                h.remove()

    def greedy(self, prompt_ids: torch.Tensor, n_new: int) -> torch.Tensor:
        """Greedy decoding by full recomputation at every step (no KV cache)."""
        ids = prompt_ids
        for _ in range(n_new):
            nxt = self.logits(ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids


# ---- add_direction ----------------------------------------------------------------------------------------


def test_add_direction_with_scale_zero_leaves_logits_bit_identical(model, tokens):
    clean = model(tokens)
    with add_direction(model, "resid_post", _unit(576, 0) * 50, scale=0.0):
        zero = model(tokens)
    with add_direction(model, "blocks.4.hook_resid_post", _unit(576, 1), scale=0.0, positions=[2, 5]):
        zero_some = model(tokens)
    assert torch.equal(zero, clean) and torch.equal(zero_some, clean)


def test_add_direction_equals_a_raw_hook_on_plain_hf(model, ref, tokens):
    v = _unit(576, 2) * 8
    with add_direction(model, "blocks.10.hook_resid_post", v, scale=0.5, positions=slice(7, None)):
        got = model(tokens)
    want = _RefEdits(ref, add=(10, 0.5 * v, 7)).logits(tokens)
    _assert_logits_close(got, want)
    assert not torch.allclose(got, model(tokens), atol=1e-2)  # the edit is real
    torch.testing.assert_close(got[:, :7], model(tokens)[:, :7], atol=0, rtol=0)  # positions before 7 untouched


def test_nested_additions_add_up(model, tokens):
    a, b = _unit(576, 3) * 4, _unit(576, 4) * 4
    with (
        add_direction(model, "blocks.6.hook_resid_pre", a),
        add_direction(model, "blocks.6.hook_resid_pre", b, scale=-2),
    ):
        nested = model(tokens)
    with add_direction(model, "blocks.6.hook_resid_pre", a - 2 * b):
        once = model(tokens)
    _assert_logits_close(nested, once)  # (x + a) - 2b vs x + (a - 2b): rounding apart


# ---- project_out ---------------------------------------------------------------------------------------------


def test_project_out_leaves_the_activation_orthogonal(model, tokens):
    dirs = torch.stack([_unit(576, 5) * 3, _unit(576, 6)])  # two directions, not unit, not orthogonal to each other
    seen = {}

    def read(x, hook):
        seen[hook.name] = x.detach().clone()

    _, clean = model.run_with_cache(tokens, names_filter="blocks.8.hook_resid_post")
    with project_out(model, "blocks.8.hook_resid_post", dirs), model.hooks([("blocks.9.hook_resid_pre", read)]):
        model(tokens)
    after = seen["blocks.9.hook_resid_pre"].double()[0]  # [pos, d_model]: what the next layer reads
    before = clean["blocks.8.hook_resid_post"].double()[0]
    for d in dirs.double():
        cos = (after @ d) / (after.norm(dim=-1) * d.norm())
        # x - (x Q^T) Q in float32 leaves a component of size eps |x| along d (a few roundings: two products and a
        # difference), so the cosine is that over |after|
        assert (cos.abs() <= numerics.tol(torch.float32, 1.0, depth=3) * before.norm(dim=-1) / after.norm(dim=-1)).all()
    # and only the span was removed: before - after lies in span(dirs) (least squares residual ~ 0)
    coef = torch.linalg.lstsq(dirs.double().T, (before - after).T).solution
    residual = (before - after).T - dirs.double().T @ coef
    # what is left outside the span is the projection's float32 rounding, at the activation's magnitude
    assert residual.abs().max() <= numerics.tol(torch.float32, numerics.magnitude(before), depth=3)


def test_project_out_equals_a_raw_hook_on_plain_hf(model, ref, tokens):
    d = _unit(576, 7)
    with project_out(model, "blocks.12.hook_resid_post", d):
        got = model(tokens)
    want = _RefEdits(ref, project=(12, d[None])).logits(tokens)
    _assert_logits_close(got, want)


# ---- splice ---------------------------------------------------------------------------------------------------


class _Scale(nn.Module):
    def __init__(self, factor: float, d: int = 576):
        super().__init__()
        self.lin = nn.Linear(d, d, bias=False)
        with torch.no_grad():
            self.lin.weight.copy_(torch.eye(d) * factor)

    def forward(self, x):
        return self.lin(x)


def test_splice_of_an_identity_module_leaves_logits_bit_identical(model, tokens):
    clean = model(tokens)
    with splice(model, "blocks.3.hook_mlp_out", nn.Identity()):
        ident = model(tokens)
    with splice(model, "resid_post", _Scale(1.0)):  # a real matmul by I at every layer
        ident_matmul = model(tokens)
    assert torch.equal(ident, clean) and torch.equal(ident_matmul, clean)


def test_splice_equals_a_raw_hook_and_keep_error_restores_the_value(model, ref, tokens):
    with splice(model, "blocks.3.hook_mlp_out", _Scale(3.0)):
        got = model(tokens)
    _assert_logits_close(got, _RefEdits(ref, mlp_scale=(3, 3.0)).logits(tokens))
    lossy = nn.Linear(576, 576)  # a bad "SAE": the error term carries everything
    with splice(model, "blocks.3.hook_mlp_out", lossy, keep_error=True):
        kept = model(tokens)
    _assert_logits_close(kept, model(tokens))  # lossy(x) + (x - lossy(x)): x up to rounding


# ---- block_keys --------------------------------------------------------------------------------------------


def _ranges(model) -> list[tuple[int, int]]:
    """Four sentences' token ranges in `tokens` (no BOS for this model), read off the offsets."""
    enc = model.tokenizer(TEXT, add_special_tokens=False, return_offsets_mapping=True)
    cuts = [0, TEXT.index("First"), TEXT.index("Then"), TEXT.index("Wait"), TEXT.index("So"), len(TEXT)]
    out = []
    for a, b in zip(cuts, cuts[1:]):
        toks = [i for i, (s, e) in enumerate(enc["offset_mapping"]) if a <= s < b]
        out.append((toks[0], toks[-1] + 1))
    return out


def test_block_keys_equals_an_explicit_mask_on_plain_hf(model, ref, tokens):
    with block_keys(model, ranges=[(3, 9)]):
        got = model(tokens)
    want = _RefEdits(ref, hidden_keys=range(3, 9)).logits(tokens)
    _assert_logits_close(got, want)


def test_block_keys_one_after_another_and_nested_never_reuse_a_stale_mask(model, ref, tokens, monkeypatch):
    """The blocked mask is built once per forward and shared by the layers (`attention._blocked_mask`); a later
    forward with other blocks, or a nested block, must get its own mask, not the memoised one."""
    from thoughtlens.model import attention

    built = []
    real = attention.additive_mask
    monkeypatch.setattr(attention, "additive_mask", lambda *a: built.append(1) or real(*a))
    with block_keys(model, ranges=[(3, 9)]):
        model(tokens)
    assert len(built) == 1  # one build for all 30 layers
    with block_keys(model, ranges=[(10, 14)]):  # same shapes, other keys
        got = model(tokens)
    _assert_logits_close(got, _RefEdits(ref, hidden_keys=range(10, 14)).logits(tokens))
    with block_keys(model, ranges=[(3, 9)]):
        model(tokens)
        with block_keys(model, ranges=[(10, 14)]):
            got = model(tokens)
    want = _RefEdits(ref, hidden_keys=[*range(3, 9), *range(10, 14)]).logits(tokens)
    _assert_logits_close(got, want)
    assert not attention._MASK_MEMO  # freed when the block closed


def test_block_keys_equals_the_suppression_matrix(model, tokens):
    """suppression_matrix (KV-cache reuse, batched rows, chunked KL) vs one full forward per sentence under
    block_keys, KL(base || suppressed) at temperature 0.6 written out here. In fp32 like the module: the KL
    of these logits in fp64 differs from fp32's by up to 1e-5 (its ~3.6 nats summed over 49k entries)."""
    assert model.default_prepend_bos is False
    ranges = _ranges(model)
    got = suppression_matrix(model, tokens, ranges, temperature=0.6, batch_size=2, kl_reduction="raw")  # plain KL
    with torch.no_grad():
        logits = model(tokens)[0] / 0.6
        base = torch.log_softmax(logits, dim=-1)
        bound = numerics.tol(torch.float32, numerics.magnitude(logits))
        for j, (a, b) in enumerate(ranges):
            with block_keys(model, ranges=[(a, b)]):
                sup = torch.log_softmax(model(tokens)[0] / 0.6, dim=-1)
            kl = (base.exp() * (base - sup)).sum(-1)  # [pos]
            for k in range(j + 1, len(ranges)):
                c, d = ranges[k]
                want = kl[c - 1 : d - 1].mean().item()  # logits at p predict token p + 1
                # KL moves by at most max |d log p|, itself ~ eps * |logits / T|: the two sides round differently
                assert abs(got[j, k] - want) <= bound, (j, k, got[j, k], want, bound)
    assert np.nanmin(got) > 1e-3


def test_block_keys_with_heads_only_touches_those_heads(model, tokens):
    patterns = {}

    def read(p, hook):
        patterns[hook.name] = p.detach()

    with block_keys(model, [1, 2], heads=[(5, 0), (5, 4)]), model.hooks([("blocks.5.attn.hook_pattern", read)]):
        model(tokens)
    p = patterns["blocks.5.attn.hook_pattern"][0]  # [head, q, k]
    assert p[[0, 4]][:, :, 1:3].abs().max() == 0  # hidden in heads 0 and 4
    assert p[[1, 2, 3]][:, 3:, 1:3].abs().min() > 0  # visible elsewhere
    # rows renormalised: a sum of probabilities (magnitude 1) over the row's keys, one rounding each
    numerics.assert_close(p.sum(-1), torch.ones_like(p.sum(-1)), dtype=torch.float32, depth=p.shape[-1])


# ---- inside generate, inside the sampler, and composed -------------------------------------------------------


def _prompt_ids(model) -> torch.Tensor:
    return model.to_tokens(PROMPT)


def test_each_intervention_works_inside_generate(model, ref):
    ids = _prompt_ids(model)
    n = ids.shape[1]
    # Strong edits (the residual norm here is in the hundreds), so greedy text changes on any CPU.
    v, d = _unit(576, 8) * 400, _unit(576, 9)
    cases = [
        # From the last prompt position on: the first generated token already feels the direction.
        (
            lambda: add_direction(model, "blocks.10.hook_resid_post", v, positions=slice(n - 1, None)),
            _RefEdits(ref, add=(10, v, n - 1)),
        ),
        (lambda: project_out(model, "blocks.12.hook_resid_post", d), _RefEdits(ref, project=(12, d[None]))),
        (lambda: splice(model, "blocks.3.hook_mlp_out", _Scale(-1.0)), _RefEdits(ref, mlp_scale=(3, -1.0))),
        (lambda: block_keys(model, ranges=[(1, 3)]), _RefEdits(ref, hidden_keys=range(1, 3))),
    ]
    clean = model.generate(ids, max_new_tokens=N_NEW)
    changed = 0
    for make, reference in cases:
        with make():
            got = model.generate(ids, max_new_tokens=N_NEW)
        assert torch.equal(got, reference.greedy(ids, N_NEW))
        changed += not torch.equal(got, clean)
    assert changed >= 3  # the interventions change what is generated, not only logits


def test_all_four_compose_inside_generate_and_the_sampler(model, ref):
    from thoughtlens.sample.base import SampleRequest, SamplingParams
    from thoughtlens.sample.hf import HFSampler

    ids = _prompt_ids(model)
    n = ids.shape[1]
    v, d = _unit(576, 10) * 6, _unit(576, 11)
    reference = _RefEdits(ref, add=(10, v, n), project=(12, d[None]), mlp_scale=(3, 3.0), hidden_keys=range(1, 3))
    want = reference.greedy(ids, N_NEW)

    def all_four():
        stack = contextlib.ExitStack()
        stack.enter_context(add_direction(model, "blocks.10.hook_resid_post", v, positions=slice(n, None)))
        stack.enter_context(project_out(model, "blocks.12.hook_resid_post", d))
        stack.enter_context(splice(model, "blocks.3.hook_mlp_out", _Scale(3.0)))
        stack.enter_context(block_keys(model, ranges=[(1, 3)]))
        return stack

    params = SamplingParams(temperature=0.0, max_new_tokens=N_NEW, seed=0)
    with all_four():
        got = model.generate(ids, max_new_tokens=N_NEW)
        sampled = HFSampler(model, batch_size=2).sample([SampleRequest(PROMPT, (0, 1))], params)
    steered_sampler = HFSampler(model, batch_size=1, intervention=all_four)  # the sampler opens them itself
    sampled_too = steered_sampler.sample([SampleRequest(PROMPT, (0,))], params)
    assert torch.equal(got, want)
    text = model.tokenizer.decode(want[0, n:], skip_special_tokens=True)
    assert [c.text for c in sampled] == [text, text] and sampled_too[0].text == text
    # everything was removed on exit
    assert all(ctl.idle for ctl in model._controls)
    assert torch.equal(
        model.generate(ids, max_new_tokens=N_NEW), ref.generate(ids, max_new_tokens=N_NEW, do_sample=False)
    )


def test_observe_attention_sees_every_chosen_layer_and_changes_nothing(model, tokens):
    rows = {}

    def observer(call):
        rows[call.layer] = call.pattern_rows(slice(0, 4))[0]  # [head, 4, k]

    clean = model(tokens)
    with observe_attention(model, observer, layers=[0, 7]) as seen:
        out = model(tokens)
    assert seen.layers_seen == {0, 7} and torch.equal(out, clean)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.startswith("blocks.7.attn.hook_"))
    # probabilities, at the scale of their scores' rounding, after 8 layers of float32 rounding
    scale = numerics.pattern_scale(cache["blocks.7.attn.hook_q"], cache["blocks.7.attn.hook_k"])
    numerics.assert_close(
        rows[7], cache["blocks.7.attn.hook_pattern"][0, :, :4], dtype=torch.float32, depth=8, scale=scale
    )


# ---- TransformerLens-style hooks ---------------------------------------------------------------------------


def test_a_transformer_lens_style_hook_function_works_unchanged(model, tokens):
    seen = {}

    def tl_hook(resid, hook):  # written for TransformerLens: hook.layer() is a method
        seen[hook.layer()] = hook.name
        return resid

    with model.hooks([("resid_post", tl_hook)]):
        model(tokens)
    assert seen == {L: f"blocks.{L}.hook_resid_post" for L in range(30)}

    def layerless(x, hook):
        hook.layer()

    with pytest.raises(HookError, match="not inside a block"), model.hooks([("hook_embed", layerless)]):
        model(tokens)


def test_public_token_and_weight_helpers(model, ref):
    assert torch.equal(model.as_tokens(TEXT), model.to_tokens(TEXT))
    assert model.as_tokens(torch.tensor([1, 2, 3])).shape == (1, 3)
    assert model.W_E.shape == (49152, 576) and model.W_U.shape == (576, 49152)
    assert torch.equal(model.W_E, ref.model.embed_tokens.weight) and torch.equal(model.W_U, ref.lm_head.weight.T)


# ---- bad input ----------------------------------------------------------------------------------------------


def test_bad_input_gets_one_line_errors(model, tokens):
    cases = [
        (lambda: add_direction(model, "blocks.3.hook_resid_post", torch.ones(100)), "width 576"),
        (lambda: add_direction(model, "blocks.3.hook_resid_psot", torch.ones(576)), "unknown hook name"),
        (lambda: add_direction(model, "blocks.3.hook_resid_post", torch.ones(576), positions=[-1]), "non-negative"),
        (lambda: project_out(model, "blocks.3.hook_resid_post", torch.zeros(576)), "all zero"),
        (lambda: project_out(model, "blocks.3.attn.hook_pattern", torch.ones(576)), "attention pattern"),
        (lambda: block_keys(model, [1], layers=[30]), "do not exist"),
        (lambda: block_keys(model, [1], heads=[(0, 9)]), "does not exist"),
        (lambda: block_keys(nn.Linear(2, 2), [1]), "no hook points"),
        (lambda: observe_attention(model, print, layers=[-1]), "do not exist"),
    ]
    for make, match in cases:
        with pytest.raises(HookError, match=match) as e:
            with make():
                pass
        assert "\n" not in str(e.value)
    with pytest.raises(HookError, match="returned shape"):
        with splice(model, "blocks.3.hook_mlp_out", nn.Linear(576, 10)):
            model(tokens)
    assert all(ctl.idle for ctl in model._controls)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.hf_model.modules())
