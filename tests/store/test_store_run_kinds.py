"""Which run a command uses by default in a store holding several kinds of runs (store.run_store.run_kind,
pick_run_id): the latest run of the command's own kind, named with the others; a one-line error otherwise."""

from __future__ import annotations

import pytest

from thoughtlens.errors import StoreError
from thoughtlens.store.run_store import RunStore, pick_run_id, run_kind


def test_run_kind_from_stored_kind_then_id_prefix():
    assert run_kind("anchors-1", {"n_rollouts": 1}) == "anchors"
    assert run_kind("resilience-1", {}) == "resilience"
    assert run_kind("intervene-1", {}) == "intervention"
    assert run_kind("transplant-1", {}) == "transplant"
    assert run_kind("attention", {"kind": "white_box"}) == "white_box"
    assert run_kind("anchors-2", {"kind": "custom"}) == "custom"
    assert run_kind("my-run", {"n_rollouts": 1}) == "unlabelled"


def _store(path, ids):
    store = RunStore(path)
    for rid in ids:
        store.create_run(rid, {"n": 1})
    return store


def test_latest_of_the_kind_is_picked_and_the_others_named(tmp_path):
    store = _store(tmp_path / "a.sqlite", ["anchors-old", "resilience-x", "anchors-new", "intervene-y"])
    rid, note = pick_run_id(store, None, param="--run")
    assert rid == "anchors-new"
    assert note.startswith("run anchors-new (latest of 2 anchors runs; others: anchors-old; also in the store: ")
    assert "resilience-x (resilience)" in note and "intervene-y (intervention)" in note and "\n" not in note
    assert pick_run_id(store, None, ("transplant", "anchors"))[0] == "anchors-new"  # preference order
    assert pick_run_id(store, "resilience-x")[0] == "resilience-x"  # any kind when given
    with pytest.raises(StoreError, match=r"no run 'zz' in .*anchors-old \(anchors\).*pass one of those as --run"):
        pick_run_id(store, "zz", param="--run")


def test_no_run_of_the_kind(tmp_path):
    only = _store(tmp_path / "one.sqlite", ["transplant-a"])
    assert pick_run_id(only)[0] == "transplant-a"  # the store's only run, whatever its kind
    named = _store(tmp_path / "named.sqlite", ["my-run", "resilience-b"])
    rid, note = pick_run_id(named)
    assert rid == "my-run" and "named by hand" in note
    derived = _store(tmp_path / "derived.sqlite", ["resilience-a", "intervene-b"])
    with pytest.raises(StoreError, match=r"has 2 runs \(resilience-a, intervene-b\); pick one with --run \.\.\.$"):
        pick_run_id(derived, param="--run")
    with pytest.raises(StoreError, match="has no runs; run `thoughtlens anchors run` into it first"):
        pick_run_id(_store(tmp_path / "empty.sqlite", []))
