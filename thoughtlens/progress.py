"""Progress events: the library reports what it is doing, the caller decides how to show it.

Long jobs (rollouts, attention passes, SAE training) take an `on_progress` callback and call it with
`ProgressEvent`s. Library code never prints: the CLI renders these events with rich
(`thoughtlens/cli/_common.py`), a notebook can print them, a test can collect them. A `note` event
carries one line of text (a skipped step and why, a warning) instead of a count.

    def show(event):                       # the smallest useful renderer
        print(event.note or f"{event.description}: {event.completed}/{event.total}")
    thoughtlens.run_anchors("What is 2 + 3?", answer="5", on_progress=show)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TextIO


@dataclass(frozen=True)
class ProgressEvent:
    """One update of one task. `task` is a stable key ("rollouts", "sentence attention", ...);
    `total` is None while unknown; `tokens` counts generated tokens so far (for tok/s)."""

    task: str
    description: str = ""
    completed: int = 0
    total: int | None = None
    tokens: int = 0
    elapsed_s: float = 0.0
    note: str | None = None

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.elapsed_s if self.elapsed_s > 0 else 0.0


OnProgress = Callable[[ProgressEvent], None]


class Tracker:
    """Counts the work of one task and sends an event after every change (a no-op without a callback)."""

    def __init__(self, on_progress: OnProgress | None, task: str, description: str = "", total: int | None = None):
        self.on_progress, self.task, self.description, self.total = on_progress, task, description, total
        self.completed = 0
        self.tokens = 0
        self.t0 = time.perf_counter()
        self._emit()

    def _emit(self) -> None:
        if self.on_progress is not None:
            self.on_progress(
                ProgressEvent(
                    self.task, self.description, self.completed, self.total, self.tokens, time.perf_counter() - self.t0
                )
            )

    def describe(self, description: str) -> None:
        self.description = description
        self._emit()

    def add_total(self, n: int) -> None:
        self.total = (self.total or 0) + n
        self._emit()

    def advance(self, n: int = 1, tokens: int = 0) -> None:
        self.completed += n
        self.tokens += tokens
        self._emit()

    def advancer(self) -> Callable[[int], None]:
        """`fn(n)` that advances this task by n: for code that reports plain step counts."""
        return lambda n: self.advance(n)


def note(on_progress: OnProgress | None, text: str, task: str = "note") -> None:
    """Send one line of text (a skipped step and why, a warning) to the caller."""
    if on_progress is not None:
        on_progress(ProgressEvent(task, note=text))


def line_printer(every_s: float = 10.0, stream: TextIO | None = None) -> OnProgress:
    """A plain-text renderer for scripts and log files (the CLI renders with rich instead): every note, and a
    line per task at most every `every_s` seconds plus its last step, with tok/s and an ETA where known:
    `fine-tuning planted (loss 0.4): 12/32, 88 tok/s, 41 s, ETA 68 s`. stream: default sys.stdout."""
    last: dict[str, float] = {}

    def show(event: ProgressEvent) -> None:
        out = stream or sys.stdout
        if event.note:
            print(event.note, file=out, flush=True)
            return
        now = time.perf_counter()
        done = event.total is not None and event.completed >= event.total
        if not done and now - last.get(event.task, float("-inf")) < every_s:
            return
        last[event.task] = now
        parts = [f"{event.description or event.task}: {event.completed}" + (f"/{event.total}" if event.total else "")]
        if event.tokens:
            parts.append(f"{event.tokens_per_s:.0f} tok/s")
        parts.append(f"{event.elapsed_s:.0f} s")
        if event.total and 0 < event.completed < event.total:
            parts.append(f"ETA {event.elapsed_s / event.completed * (event.total - event.completed):.0f} s")
        print(", ".join(parts), file=out, flush=True)

    return show
