"""Fixtures the web tests share: a small real photo and apps built on the real pipeline."""
from __future__ import annotations

import pytest

from app import create_app
from settings import Settings
from tests.conftest import jpeg_bytes, shared_image


@pytest.fixture(scope="module")
def small_photo() -> bytes:
    """GT04 (two trolls with loose hair) as a 320 px JPEG: quick to cut out, hard at the edges."""
    return jpeg_bytes(shared_image("GT04"), 320)


@pytest.fixture
def api_pipeline(small_side_pipeline):
    """The pipeline make_api's apps run on (a module whose measures need ISNet's native side overrides it)."""
    return small_side_pipeline


@pytest.fixture
def make_api(tmp_path, api_pipeline):
    """make_api(**settings) -> a Flask test client of a fresh app; its pipeline thread stops after the test."""
    apps = []

    def factory(**overrides):
        values = dict(data_dir=tmp_path / "var", warm_up=False)
        values.update(overrides)
        app = create_app(Settings(**values), pipeline=api_pipeline)
        apps.append(app)
        return app.test_client()

    yield factory
    for app in apps:
        app.extensions["cutout"]["worker"].stop()
