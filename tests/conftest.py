"""Shared test setup: float64 everywhere, strict dtype promotion, a private module cache."""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("EQGEN_CACHE_DIR", tempfile.mkdtemp(prefix="eqgen-test-cache-"))

import jax  # noqa: E402

jax.config.update("jax_enable_x64", True)
