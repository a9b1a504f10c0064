"""Every error thoughtlens raises on bad input: one line that says what went wrong and how to fix it.

The maintained list of bad inputs, with the message each one gives and the test that holds it, is
docs/bad_inputs.md.
"""

from __future__ import annotations


class ThoughtlensError(Exception):
    """Base class. The message is one line and names the fix."""


class ConfigError(ThoughtlensError, ValueError):
    """An option or config value is out of range or of the wrong kind (rollouts, temperature, top-p,
    token budgets, thresholds, dtype, layer/head indices...). Raised when the config is built, so a typo
    is caught before any model is loaded. Also a ValueError, for callers that catch those."""


class ModelNotFoundError(ThoughtlensError):
    """A model could not be found or loaded (wrong path, hub unreachable, unsupported architecture)."""


class HookError(ThoughtlensError):
    """A hook name, hook function or hook result is invalid."""


class TraceError(ThoughtlensError):
    """A reasoning trace or problem cannot be used (empty, missing </think>, no sentences, no answer...)."""


class DataError(TraceError):
    """A data file (published Thought Anchors directory, problems file, trace file) is missing or has the
    wrong shape; the message names the file, the key and the fix. (A TraceError: these files hold traces
    and problems, and callers that caught TraceError for them keep working.)"""


class StoreError(ThoughtlensError):
    """A run store is missing, corrupt, unwritable, busy, or incompatible with the requested run."""


class BackendError(ThoughtlensError):
    """A sampling backend is unavailable or unreachable."""


class SAEError(ThoughtlensError):
    """A sparse autoencoder, its checkpoint or its activations cannot be used (wrong width or hook,
    a pickle file, NaNs in activations, a corpus shorter than the buffer...)."""
