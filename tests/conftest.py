"""Shared fixtures: a fake Pleo server on loopback and clients pointed at it."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

import postgres_cluster
import prometheus_server
from pleo_export_async.testing import FakePleo, instant_retries

pytest_plugins = ["busy_loops"]  # PLEO_BUSY_LOOPS: the tests beside CPU hogs, `make loaded`


@pytest.fixture
def instant() -> Iterator[None]:
    """Backoff waits are zero inside the test; Retry-After pauses still hold."""
    with instant_retries():
        yield


@pytest.fixture
async def fake() -> AsyncIterator[FakePleo]:
    async with FakePleo(seed=7) as server:
        yield server


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database for the tests: PLEO_TEST_POSTGRES_DSN's, or a throwaway cluster
    started for this session (as `.ci/run` does) and stopped after it."""
    given = os.environ.get("PLEO_TEST_POSTGRES_DSN")
    if given:
        yield given
        return
    directory = Path(tempfile.mkdtemp(prefix="pleo-test-postgres-"))
    os.chmod(directory, 0o755)
    try:
        dsn = postgres_cluster.start(directory)
    except postgres_cluster.ClusterUnavailable as unavailable:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(str(unavailable), pytrace=False)
    try:
        yield dsn
    finally:
        postgres_cluster.stop(directory)


@pytest.fixture
async def postgres_schema(postgres_dsn: str) -> AsyncIterator[str]:
    """A database schema name of this test's own, dropped after it."""
    import asyncpg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    yield schema
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await connection.close()


@pytest.fixture(scope="session")
def prometheus() -> Iterator[tuple[str, Path]]:
    """A real Prometheus server: its URL and the file of targets it scrapes every second.
    PLEO_TEST_PROMETHEUS_URL's and PLEO_TEST_PROMETHEUS_TARGETS's (`.ci/run` starts one), or
    one started for this session and stopped after it."""
    url, targets = (
        os.environ.get("PLEO_TEST_PROMETHEUS_URL"),
        os.environ.get("PLEO_TEST_PROMETHEUS_TARGETS"),
    )
    if url and targets:
        yield url, Path(targets)
        prometheus_server.write_targets(Path(targets), [])
        return
    directory = Path(tempfile.mkdtemp(prefix="pleo-test-prometheus-"))
    try:
        started = prometheus_server.start(directory)
    except prometheus_server.PrometheusUnavailable as unavailable:
        shutil.rmtree(directory, ignore_errors=True)
        pytest.fail(str(unavailable), pytrace=False)
    try:
        yield started
    finally:
        prometheus_server.stop(directory)
        shutil.rmtree(directory, ignore_errors=True)
