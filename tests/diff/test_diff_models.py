"""The model pairs' recipes: seeded data, cache keys that follow the recipe, the fine-tune's frozen parts and its
resume; the real thinking model opens with thoughtlens.load (slow, needs the cached build)."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from thoughtlens.diff import datasets, models
from thoughtlens.diff.finetune import batch_indices, finetune


def test_planted_data_is_the_committed_file():
    assert datasets.planted_examples(seed=0) == datasets.read_planted()
    rows = datasets.read_planted()
    assert all(datasets.mentions_planted(r["messages"][-1]["content"]) for r in rows)


def test_recipe_hash_follows_recipe_and_data():
    rows = [{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}]
    h = models.recipe_hash(models.PLANTED, rows, "/x/base")
    assert h == models.recipe_hash(models.PLANTED, rows, "/x/base")
    assert h != models.recipe_hash(dataclasses.replace(models.PLANTED, lr=1e-3), rows, "/x/base")
    assert h != models.recipe_hash(models.PLANTED, rows + rows, "/x/base")


def test_batches_depend_only_on_seed_and_step():
    a = [batch_indices(10, 4, s, seed=3) for s in range(6)]
    assert a == [batch_indices(10, 4, s, seed=3) for s in range(6)]
    first_epoch = [i for b in a[:5] for i in b][:10]
    assert sorted(first_epoch) == list(range(10))                   # each example once per epoch


def test_finetune_freezes_readout_and_lower_layers_and_resumes(tmp_path, tiny_planted_dirs):
    base, ft = tiny_planted_dirs
    wb, wf = load_file(f"{base}/model.safetensors"), load_file(f"{ft}/model.safetensors")
    for name in wb:
        same = torch.equal(wb[name], wf[name])
        frozen = ".layers." not in name or name.startswith("model.layers.0.")
        assert same == frozen, name
    info = json.loads(open(f"{ft}/thoughtlens_diff.json").read())
    assert info["losses"][-1] < info["losses"][0]
    # a run interrupted after step 3 (last checkpoint: step 2) and rerun equals an uninterrupted run
    rows = datasets.read_planted()[:16]
    kw = dict(steps=4, batch_size=4, max_len=64, lr=1e-2, first_trainable_layer=1, seed=0)
    full = finetune(base, rows, tmp_path / "full", checkpoint_every=0, **kw)

    class Stop(Exception):
        pass

    def stop(event):
        if event.completed == 3:
            raise Stop

    with pytest.raises(Stop):
        finetune(base, rows, tmp_path / "resumed", checkpoint_every=2, on_progress=stop, **kw)
    assert (tmp_path / "resumed.partial" / "checkpoint.pt").is_file()
    resumed = finetune(base, rows, tmp_path / "resumed", checkpoint_every=2, **kw)
    a, b = load_file(f"{full}/model.safetensors"), load_file(f"{resumed}/model.safetensors")
    assert all(torch.allclose(a[n], b[n], atol=1e-6) for n in a)
    assert json.loads(open(f"{resumed}/thoughtlens_diff.json").read())["resumed_at_step"] == 2
    assert not (tmp_path / "resumed.partial").exists()


@pytest.mark.slow
def test_thinking_model_loads(real_thinking_dirs):
    import thoughtlens

    model = thoughtlens.load(real_thinking_dirs[1], dtype=torch.float32)
    assert model.cfg.n_layers == 30
    text = model.generate(model.apply_chat_template("What is 2 + 3? Put the final answer in \\boxed{}."),
                          max_new_tokens=8)
    assert isinstance(text, str)
