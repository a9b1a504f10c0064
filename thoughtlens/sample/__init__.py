"""Samplers: prefixes in, completions out. Backends: openai (any OpenAI-compatible server) and vllm
(optional, GPU); the hf backend lives in `thoughtlens.sample.hf` (imported on demand: it needs torch)."""

from thoughtlens.sample.base import Completion, Sampler, SampleRequest, SamplingParams, requests_for, rollout_seed
from thoughtlens.sample.fleet import FleetSampler
from thoughtlens.sample.openai import OpenAIClient, OpenAISampler
from thoughtlens.sample.provenance import Provenance
from thoughtlens.sample.registry import make_sampler
from thoughtlens.sample.vllm import VLLMSampler

__all__ = [
    "Completion",
    "FleetSampler",
    "OpenAIClient",
    "OpenAISampler",
    "Provenance",
    "SampleRequest",
    "Sampler",
    "SamplingParams",
    "VLLMSampler",
    "make_sampler",
    "requests_for",
    "rollout_seed",
]
