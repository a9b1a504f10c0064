#!/usr/bin/env bash
# One command that exercises thoughtlens's GPU paths with small budgets (about a minute on one H100):
# the hf backend on CUDA in bf16, device_map="auto", a receiver-heads pass on CUDA (each compared with
# fp32 on CPU), and the in-process vllm backend where vLLM is installed.
#
#   scripts/gpu_check.sh --model /path/to/R1-Distill-Qwen-1.5B     # a model you have locally
#   scripts/gpu_check.sh --tokenizer DIR                           # a tiny random Llama with DIR's tokenizer
#
# Prints one `ok|FAIL|skip <check>: <figures>` line per check; exits non-zero if any check failed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
exec "$PY" scripts/gpu_check.py "$@"
