"""A store written by an earlier layout of the package (tests/store/data/interrupted_v0.sqlite, see
old_store_writer.py) opens under today's code with the same run id, and resumes: only the missing rollouts
are asked for, and the finished run equals one run without interruption."""

from __future__ import annotations

import shutil
from pathlib import Path

import old_store_writer as writer
import pandas as pd

from thoughtlens.anchors.importance.black_box import AnchorsRun
from thoughtlens.store.run_store import RunStore

OLD = Path(__file__).with_name("data") / "interrupted_v0.sqlite"


def test_an_older_store_keeps_its_run_id_and_resumes_without_duplicates(tmp_path):
    fresh = tmp_path / "fresh.sqlite"
    fresh_id = writer.write(str(fresh), stop_after=None)  # today's code, never interrupted
    old = tmp_path / "old.sqlite"
    shutil.copy(OLD, old)
    with RunStore(old) as store:
        assert [r["run_id"] for r in store.runs()] == [fresh_id]  # the id hashed from today's config
        sampler = writer.Scripted()
        job = AnchorsRun(sampler, store, writer.config())
        assert job.resumed and job.run_id == fresh_id
        job.run([writer.problem()])
        resumed_metrics = store.metrics(fresh_id)
    with RunStore(fresh) as store:
        total = len(store.rollouts(fresh_id))
        fresh_metrics = store.metrics(fresh_id)
    assert sampler.calls == total - writer.STOP_AFTER  # only the missing ones were asked for
    with RunStore(old) as store:
        assert len(store.rollouts(fresh_id)) == total  # no duplicates
    pd.testing.assert_frame_equal(resumed_metrics.reset_index(drop=True), fresh_metrics.reset_index(drop=True))
