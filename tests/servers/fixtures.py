"""Session-scoped server fixtures; a server that cannot start skips its tests loudly.

Import the fixtures you need into a test module: `from tests.servers.fixtures import postgres_url`.
"""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import loud_skip
from tests.servers.postgres import PostgresServer
from tests.servers.redis import RedisServer
from tests.servers.s3 import S3Server


def _start(server, what: str):
    try:
        return server.start()
    except Exception as error:  # missing binaries, a port race, a broken install: say which
        loud_skip(f"{what} could not start, scale-out tests cannot run: {error}")


@pytest.fixture(scope="session")
def postgres_server():
    # Not under pytest's tmp folder: that one is private to root, and the server runs as `postgres`.
    folder = Path(tempfile.mkdtemp(prefix="cutout-postgres-"))
    server = _start(PostgresServer(folder), "PostgreSQL")
    yield server
    server.stop()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_server) -> str:
    return postgres_server.new_database()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = _start(RedisServer(tmp_path_factory.mktemp("redis")), "Redis")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def s3_server():
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
    except ImportError as error:
        loud_skip(f"boto3 / moto[server] not installed (pip install -e '.[test,scale]'): {error}")
    server = _start(S3Server(), "moto's S3 server")
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict[str, str]:
    """This process talks to the moto server through the standard AWS variables, as in production."""
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server.env()
