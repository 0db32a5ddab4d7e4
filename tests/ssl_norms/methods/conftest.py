"""Fixtures of the method tests; the helpers live in ``method_helpers.py`` (a unique module
name: several test folders have a conftest.py)."""

from __future__ import annotations

import pytest
from method_helpers import METHODS


@pytest.fixture(params=sorted(METHODS))
def method_name(request) -> str:
    return request.param
