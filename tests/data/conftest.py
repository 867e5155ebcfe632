"""Shared fixtures of the data tests; the tiny on-disk datasets are written by each test."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
