"""The blob store seam on S3 (moto's standalone server on loopback, reached through the standard
AWS variables as a real endpoint would be): put/get/sweep, and result links that work from any
web process because they stream from the shared store."""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from settings import Settings
from storage.files import BlobNotFound, LocalBlobStore
from storage.open import open_blob_store
from storage.urls import UrlSigner, signing_secret
from tests.conftest import tampered
from tests.servers.fixtures import s3_env, s3_server  # noqa: F401  (fixtures)


@pytest.fixture
def s3_url(s3_server, s3_env) -> str:
    return f"s3://{s3_server.new_bucket()}/cutout/prod"


def test_s3_store_puts_gets_confines_and_sweeps(s3_url, s3_server):
    from storage.blobs_s3 import S3BlobStore

    blobs = open_blob_store(s3_url, data_dir=None)
    assert isinstance(blobs, S3BlobStore)
    blobs.put("results/j1/cutout.png", b"png")
    blobs.put("inputs/j1", b"jpeg")
    assert blobs.get("results/j1/cutout.png") == b"png" and blobs.exists("inputs/j1")
    bucket = s3_url.split("/")[2]
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    head = s3_server.client().head_object(Bucket=bucket, Key="cutout/prod/results/j1/cutout.png")
    assert sorted(item["Key"] for item in listed) == ["cutout/prod/inputs/j1", "cutout/prod/results/j1/cutout.png"]
    assert head["ContentType"] == "image/png"
    for bad in ("../escape", "/abs", "results/../../x", ""):
        with pytest.raises(ValueError):
            blobs.put(bad, b"x")
    with pytest.raises(BlobNotFound):
        blobs.get("results/none")
    assert not blobs.exists("results/none")

    assert blobs.sweep("results", older_than_s=3600) == 0  # nothing that old yet
    later = time.time() + 7200  # two hours on, both objects are over an hour old
    blobs.put("results/j2/cutout.png", b"new")
    assert blobs.sweep("results", older_than_s=3600, now=later) == 2
    assert not blobs.exists("results/j1/cutout.png") and blobs.exists("inputs/j1")
    blobs.delete("inputs/j1")
    assert not blobs.exists("inputs/j1")


def test_sweep_pages_past_a_thousand_objects(s3_url):
    blobs = open_blob_store(s3_url, data_dir=None)
    with ThreadPoolExecutor(8) as pool:  # listing pages at 1,000 keys, deleting takes 1,000 a call
        list(pool.map(lambda index: blobs.put(f"results/many/{index}.png", b"x"), range(1005)))
    assert blobs.sweep("results", older_than_s=0, now=time.time() + 60) == 1005
    assert not blobs.exists("results/many/0.png") and not blobs.exists("results/many/1004.png")


def test_links_made_by_one_web_process_work_from_another(s3_url, tmp_path):
    from app import create_app
    from bot.results import UrlBuilder

    def web_process(name: str):
        settings = Settings(data_dir=tmp_path / name, blob_url=s3_url, signing_secret="fleet-secret",
                            warm_up=False, public_base_url="https://cutout.example")
        return create_app(settings)

    first, second = web_process("web1"), web_process("web2")
    state = first.extensions["cutout"]
    state["blobs"].put("results/job42/cutout.png", b"\x89PNG fake")
    link = UrlBuilder("https://cutout.example", state["signer"]).url("results/job42/cutout.png")
    path = link.removeprefix("https://cutout.example")
    for app in (first, second):
        response = app.test_client().get(path)
        assert response.status_code == 200 and response.data == b"\x89PNG fake"
        assert response.headers["Content-Type"] == "image/png"
    assert not (tmp_path / "web1" / "blobs").exists()  # nothing went to local disk
    second.extensions["cutout"]["blobs"].delete("results/job42/cutout.png")
    assert first.test_client().get(path).status_code == 410  # deleted: the link says so
    forged = path.replace(path.split("/")[2], tampered(path.split("/")[2]))
    assert second.test_client().get(forged).status_code == 404
    # A process without the shared secret signs with its own (var/secret.key): refused elsewhere.
    lone_signer = UrlSigner(signing_secret("", tmp_path / "web3"), 3600)
    lone_link = UrlBuilder("", lone_signer).url("results/job42/cutout.png")
    assert first.test_client().get(lone_link).status_code == 404


def test_local_files_stay_the_default(tmp_path):
    assert isinstance(open_blob_store("", tmp_path), LocalBlobStore)
    with pytest.raises(ValueError):
        open_blob_store("gs://bucket", tmp_path)
