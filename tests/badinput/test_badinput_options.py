"""Bad option values: refused when the config is built (library) and before any model load (CLI).

Each case is one row of docs/bad_inputs.md. The CLI cases pass a model path that does not exist: an option
checked before the model is loaded fails on the option, one checked after fails on the model path instead.
"""

from __future__ import annotations

import math

import pytest
from _badinput_cli import NO_MODEL, assert_one_line, assert_one_line_error, cli, files_under

from thoughtlens.anchors.config import AnchorsConfig, Problem
from thoughtlens.anchors.run_options import check_attention_options, check_run_options
from thoughtlens.checks import check_index
from thoughtlens.errors import ConfigError, DataError, StoreError, ThoughtlensError, TraceError
from thoughtlens.sample.base import SamplingParams

# (config field, bad value, text the message must contain): every numeric knob of a run, out of range.
BAD_CONFIG = [
    ("n_rollouts", 0, "--rollouts"),
    ("n_rollouts", -1, "--rollouts"),
    ("n_rollouts", 2.5, "integer"),
    ("n_rollouts", True, "integer"),
    ("max_new_tokens", 0, "max_new_tokens"),
    ("base_max_new_tokens", 0, "base_max_new_tokens"),
    ("forced_max_new_tokens", -3, "forced_max_new_tokens"),
    ("temperature", -0.1, "temperature must be >= 0"),
    ("temperature", math.nan, "finite"),
    ("temperature", math.inf, "finite"),
    ("base_temperature", -1.0, "base_temperature"),
    ("top_p", 0.0, "top_p"),
    ("top_p", 1.5, "top_p"),
    ("top_p", -0.2, "top_p"),
    ("similarity_threshold", 1.5, "--threshold"),
    ("similarity_threshold", -2.0, "--threshold"),
    ("kl_alpha", 0.0, "kl_alpha"),
    ("seed", 1.5, "seed must be an integer"),
    ("answer_style", "roman", "answer style"),
    ("backend", "ollama", "backend"),
    ("think_tags", ("<think>",), "think_tags"),
    ("forced", "yes", "forced"),
]


@pytest.mark.parametrize("field, value, needle", BAD_CONFIG, ids=[f"{f}={v!r}" for f, v, _ in BAD_CONFIG])
def test_config_refuses_out_of_range_values(field, value, needle):
    with pytest.raises(ConfigError) as info:
        AnchorsConfig(**{field: value})
    msg = assert_one_line(info.value, needle)
    assert ": use one of" in msg or ": pass e.g." in msg  # names the fix


def test_config_boundaries_are_accepted():
    """The edges of each range are valid (an independent check that the ranges are not off by one)."""
    cfg = AnchorsConfig(
        n_rollouts=1, temperature=0.0, top_p=1.0, max_new_tokens=1, similarity_threshold=-1.0, kl_alpha=1e-9, seed=-5
    )
    assert cfg.n_rollouts == 1 and cfg.top_p == 1.0


def test_config_error_is_a_value_error_and_not_a_trace_or_model_error():
    with pytest.raises(ValueError):
        AnchorsConfig(n_rollouts=0)
    assert not issubclass(ConfigError, TraceError)


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(temperature=-1.0), "temperature"),
        (dict(top_p=0.0), "top_p"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(stop=("",)), "stop"),
        (dict(seed="1"), "seed"),
    ],
)
def test_sampling_params_refuse_bad_values(kwargs, needle):
    with pytest.raises(ConfigError) as info:
        SamplingParams(**kwargs)
    assert_one_line(info.value, needle)


def test_bad_dtype_is_a_config_error_not_a_missing_model():
    from thoughtlens.model.load import load

    with pytest.raises(ConfigError) as info:
        load(None, dtype="fp12")
    assert_one_line(info.value, "unknown dtype 'fp12'", "float32")


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_or_whitespace_problem_is_refused_where_a_problem_is_built(text):
    with pytest.raises(TraceError) as info:
        Problem("p0", text, "Question: 2 + 3?\n")
    assert_one_line(info.value, "empty problem text")
    with pytest.raises(TraceError) as info:
        Problem("p0", "2 + 3?", text)
    assert_one_line(info.value, "empty prompt")


@pytest.mark.parametrize(
    "kwargs, error, needle",
    [
        (dict(), ConfigError, "give exactly one problem source"),
        (dict(problem="2 + 3?", problems=__file__), ConfigError, "got --problem, --problems"),
        (dict(problem="   "), ConfigError, "problem text is empty"),
        (dict(problems="/nonexistent/p.jsonl"), DataError, "does not exist"),
        (dict(problems=__file__, limit=0), ConfigError, "--limit"),
        (dict(problem="2 + 3?", dtype="fp12"), ConfigError, "--dtype"),
        (dict(problem="2 + 3?", batch_size=0), ConfigError, "--batch-size"),
        (dict(problem="2 + 3?", backend="openai"), ConfigError, "--base-url"),
        (dict(problem="2 + 3?", backend="openai", base_url="localhost:8000"), ConfigError, "http://"),
        (dict(problem="2 + 3?", n_rollouts=0), ConfigError, "--rollouts"),
        (dict(problem="2 + 3?", store="/proc/thoughtlens-no/x.sqlite"), StoreError, "not writable"),
    ],
)
def test_check_run_options_refuses_every_bad_option(tmp_path, kwargs, error, needle):
    with pytest.raises(error) as info:
        check_run_options(**kwargs)
    assert_one_line(info.value, needle)


def test_check_run_options_returns_the_config_and_writes_nothing(tmp_path):
    cfg = check_run_options(
        problem="2 + 3?", store=tmp_path / "sub" / "s.sqlite", report=tmp_path / "p.html", n_rollouts=3, temperature=0.7
    )
    assert (cfg.n_rollouts, cfg.temperature) == (3, 0.7)
    assert files_under(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        (dict(top_k=0), "--top-k"),
        (dict(proximity_ignore=0), "--proximity-ignore"),
        (dict(max_tokens=0), "--max-tokens"),
        (dict(kl_temperature=0.0), "--kl-temperature"),
        (dict(batch_size=0), "--batch-size"),
        (dict(dtype="int8"), "--dtype"),
    ],
)
def test_check_attention_options(kwargs, needle):
    with pytest.raises(ConfigError) as info:
        check_attention_options(**kwargs)
    assert_one_line(info.value, needle)


@pytest.mark.parametrize("value", [-1, 30, 1.0, None])
def test_layer_and_head_indices_out_of_range(value):
    with pytest.raises(ConfigError) as info:
        check_index("--layer", value, 30, "layers")
    assert_one_line(info.value, "--layer", "0 .. 29")
    assert check_index("--head", 8, 9, "heads") == 8


# ---- the CLI: `thoughtlens anchors run` refuses bad options before loading the model ---------------------

_BASE = ["anchors", "run", "--model", NO_MODEL, "--problem", "What is 2 + 3?", "--answer", "5"]
CLI_BAD = [
    (["--rollouts", "0"], "--rollouts"),
    (["-n", "-1"], "--rollouts"),
    (
        ["--max-new-tokens", "0"],
        "--max-new-tokens (max_new_tokens) must be >= 1, got 0: pass e.g. --max-new-tokens 256",
    ),
    (["--temperature", "-0.5"], "--temperature (temperature) must be >= 0, got -0.5: pass e.g. --temperature 0.6"),
    (["--top-p", "0"], "--top-p"),
    (["--top-p", "1.5"], "--top-p"),
    (["--threshold", "1.5"], "--threshold"),
    (["--answer-style", "roman"], "answer style"),
    (["--backend", "ollama"], "backend"),
]


@pytest.mark.parametrize("extra, needle", CLI_BAD, ids=[" ".join(e) for e, _ in CLI_BAD])
def test_cli_anchors_run_refuses_bad_numbers_before_the_model_load(tmp_path, extra, needle):
    result = cli(*_BASE, "--store", tmp_path / "s.sqlite", "--report", tmp_path / "p.html", *extra)
    assert_one_line_error(result, needle)
    assert files_under(tmp_path) == []  # no store, no page


# Options that are not AnchorsConfig fields: they need the CLI to call check_run_options() first.
CLI_NEEDS_WIRING = [
    (["--problem", "   "], "problem text is empty"),
    (["--problem", ""], "problem text is empty"),
    (["--dtype", "fp12"], "--dtype"),
    (["--batch-size", "0"], "--batch-size"),
    (["--backend", "openai"], "--base-url"),
    (["--store", "/proc/thoughtlens-no/s.sqlite"], "not writable"),
    (["--budget", "sequential", "--budget-total", "1.5"], "total_fraction must lie in (0, 1]"),
    (["--budget", "fixed", "--budget-total", "0.25"], "needs --budget sequential or hybrid"),
]


@pytest.mark.parametrize("extra, needle", CLI_NEEDS_WIRING, ids=[" ".join(e) for e, _ in CLI_NEEDS_WIRING])
def test_cli_anchors_run_checks_other_options_before_the_model_load(tmp_path, extra, needle):
    result = cli(*_BASE, "--store", tmp_path / "s.sqlite", *extra)
    assert_one_line_error(result, needle)
    assert files_under(tmp_path) == []


def test_cli_limit_zero_is_refused_before_the_model_load(tmp_path):
    problems = tmp_path / "p.jsonl"
    problems.write_text('{"question": "2 + 3?", "answer": "#### 5"}\n')
    result = cli(
        "anchors", "run", "--model", NO_MODEL, "--problems", problems, "--limit", "0", "--store", tmp_path / "s.sqlite"
    )
    assert_one_line_error(result, "--limit")
    assert files_under(tmp_path) == ["p.jsonl"]


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--top-k", "0"], "--top-k"),
        (["--proximity-ignore", "0"], "--proximity-ignore"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--temperature", "0"], "temperature"),
        (["--batch-size", "0"], "--batch-size"),
    ],
)
def test_cli_anchors_attention_refuses_bad_numbers_before_the_model_load(tmp_path, extra, needle):
    trace = tmp_path / "t.txt"
    trace.write_text("First we add. Then we check. So the answer is 5.")
    result = cli(
        "anchors", "attention", "--trace", trace, "--model", NO_MODEL, "--store", tmp_path / "a.sqlite", *extra
    )
    assert_one_line_error(result, needle)
    assert files_under(tmp_path) == ["t.txt"]


def test_every_library_error_is_a_thoughtlens_error():
    for cls in (ConfigError, DataError, StoreError, TraceError):
        assert issubclass(cls, ThoughtlensError)
