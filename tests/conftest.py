"""Fixtures shared by several test modules."""

import pytest


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    """labsupport's cache folder (LABSUPPORT_CACHE_DIR) pointed at a fresh, empty folder."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("LABSUPPORT_CACHE_DIR", str(folder))
    return folder
