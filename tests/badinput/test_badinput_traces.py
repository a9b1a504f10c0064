"""Bad traces, models and servers: empty traces, no sentences after </think>, a model without a chat template,
a tokenizer that does not match the trace, an unreachable server. One-line errors, nothing half-written."""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3

import pytest
from _badinput_cli import assert_one_line, assert_one_line_error, cli

from thoughtlens.anchors.attention.sentence_attention import check_token_ranges
from thoughtlens.anchors.importance.black_box import prefixes
from thoughtlens.errors import StoreError, TraceError
from thoughtlens.store.run_store import RunStore
from thoughtlens.trace.prompts import build_prompt
from thoughtlens.trace.reasoning_trace import ReasoningTrace


@pytest.mark.parametrize("completion", ["", "   \n\t"])
def test_empty_or_whitespace_trace(completion):
    with pytest.raises(TraceError) as info:
        ReasoningTrace.parse("Question?", completion)
    assert_one_line(info.value, "empty")


def test_trace_with_no_sentences_after_the_think_tag():
    with pytest.raises(TraceError) as info:
        prefixes(ReasoningTrace.parse("Question?", "<think></think> 42"))
    assert_one_line(info.value, "no sentences", "max_new_tokens")


def test_token_ranges_from_another_tokenizer_are_refused():
    """Ranges computed with one tokenizer do not fit the token ids of another (here: 10 tokens, not 40)."""
    with pytest.raises(TraceError) as info:
        check_token_ranges([(0, 12), (12, 40)], 10)
    assert_one_line(info.value, "outside the 10 tokens", "same token ids")


def test_resuming_a_run_with_another_model_is_refused(tmp_path):
    """Stored sentences carry token ranges of the model that wrote them: a run cannot be resumed with another."""
    store = RunStore(tmp_path / "s.sqlite")
    store.create_run("r1", {"model": "SmolLM2-135M-Instruct", "n_rollouts": 4})
    with pytest.raises(StoreError) as info:
        store.create_run("r1", {"model": "Qwen2-0.5B", "n_rollouts": 4})
    assert_one_line(info.value, "keys: model", "new run id")


def test_model_without_chat_template_gets_a_plain_prompt():
    class NoTemplate:
        chat_template = None

    prompt = build_prompt(NoTemplate(), "What is 2 + 3?")
    assert prompt.startswith("What is 2 + 3?") and prompt.endswith("\n\n")


def _trace_file(tmp_path, text):
    path = tmp_path / "trace.txt"
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize(
    "text, needle, after_progress",
    [("", "empty", False), ("  \n ", "empty", False), ("<think></think> 42", "no sentences", True)],
)
def test_cli_empty_trace_or_no_sentences(tiny_lm_dir, tmp_path, text, needle, after_progress):
    result = cli(
        "anchors",
        "run",
        "--model",
        tiny_lm_dir,
        "--trace",
        _trace_file(tmp_path, text),
        "--problem",
        "What is 2 + 3?",
        "--store",
        tmp_path / "s.sqlite",
        "-n",
        "1",
        "--max-new-tokens",
        "2",
        "--dtype",
        "float32",
    )
    # A trace without sentences is found once the run has started (after a note and the progress line).
    assert_one_line_error(result, needle, after_progress=after_progress)
    if (tmp_path / "s.sqlite").exists():
        with sqlite3.connect(tmp_path / "s.sqlite") as con:
            assert con.execute("SELECT count(*) FROM rollouts").fetchone()[0] == 0


@pytest.mark.slow
def test_cli_unreachable_server_is_one_line(tiny_lm_dir, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    result = cli(
        "anchors",
        "run",
        "--model",
        tiny_lm_dir,
        "--trace",
        _trace_file(tmp_path, "First add. Then check. So 5."),
        "--problem",
        "What is 2 + 3?",
        "--backend",
        "openai",
        "--base-url",
        f"http://127.0.0.1:{port}/v1",
        "--api-model",
        "m",
        "--store",
        tmp_path / "s.sqlite",
        "-n",
        "1",
        "--max-new-tokens",
        "2",
        "--dtype",
        "float32",
    )
    assert_one_line_error(result, "cannot reach", f"127.0.0.1:{port}")


@pytest.mark.slow
def test_cli_model_without_chat_template_runs_with_a_plain_prompt(tiny_lm_dir, tmp_path):
    model = tmp_path / "no_template"
    shutil.copytree(tiny_lm_dir, model)
    config = json.loads((model / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    for f in model.glob("chat_template.*"):
        f.unlink()
    store = tmp_path / "s.sqlite"
    result = cli(
        "anchors",
        "run",
        "--model",
        model,
        "--trace",
        _trace_file(tmp_path, "First add. Then check. So 5."),
        "--problem",
        "What is 2 + 3?",
        "--store",
        store,
        "-n",
        "1",
        "--max-new-tokens",
        "2",
        "--no-forced",
        "--dtype",
        "float32",
    )
    assert result.exit_code == 0, result.stderr[-2000:]
    with sqlite3.connect(store) as con:
        (prompt,) = con.execute("SELECT prompt FROM traces").fetchone()
    assert prompt == build_prompt(None, "What is 2 + 3?")  # the plain-text prompt, no template markers
