"""thoughtlens.progress: the Tracker's events and the plain-text line printer used by scripts."""

from __future__ import annotations

import io

from thoughtlens.progress import ProgressEvent, Tracker, line_printer, note


def test_line_printer_throttles_per_task_and_always_prints_notes_and_the_end():
    buf = io.StringIO()
    show = line_printer(every_s=3600, stream=buf)
    show(ProgressEvent("train", "fine-tuning", 1, 4, tokens=100, elapsed_s=10.0))
    show(ProgressEvent("train", "fine-tuning", 2, 4, tokens=200, elapsed_s=20.0))  # throttled
    show(ProgressEvent("eval", "", 1, None, elapsed_s=1.0))  # another task: its own clock
    show(ProgressEvent("note", note="skipped one step"))
    show(ProgressEvent("train", "fine-tuning", 4, 4, tokens=400, elapsed_s=40.0))  # the last step always
    lines = buf.getvalue().splitlines()
    # ETA after 1 of 4 steps in 10 s: 3 more steps at 10 s each; 100 tokens in 10 s = 10 tok/s
    assert lines == [
        "fine-tuning: 1/4, 10 tok/s, 10 s, ETA 30 s",
        "eval: 1, 1 s",
        "skipped one step",
        "fine-tuning: 4/4, 10 tok/s, 40 s",
    ]


def test_line_printer_renders_a_trackers_events():
    buf = io.StringIO()
    show = line_printer(every_s=0, stream=buf)
    t = Tracker(show, "steps", "steps", total=2)
    t.advance(1)
    t.advance(1)
    note(show, "done")
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("steps: 0/2") and lines[-2].startswith("steps: 2/2") and lines[-1] == "done"
    assert len(lines) == 4
