"""Seeds make runs repeatable: same seed, same IDs and data; another seed, other ones."""

from __future__ import annotations

from typing import Any

from pleo_export_async.testing import FakePleo

from .helpers import call, session_for


async def _world(seed: int) -> tuple[str, list[list[str]], list[Any]]:
    async with FakePleo(seed=seed) as fake, session_for(fake) as session:
        jobs = [fake.create_job(items=5), fake.create_job(items=3, status="pending")]
        _, body = await call(session, "GET", "/v3/export-items", params={"job_id": jobs[0].id})
        return fake.company_id, [[job.id, *job.item_ids] for job in jobs], body["data"]


async def test_same_seed_gives_same_ids_and_export_items() -> None:
    """Two fakes with one seed create the same company, job and item IDs and item payloads."""
    assert await _world(42) == await _world(42)


async def test_other_seed_gives_other_ids_and_export_items() -> None:
    """A different seed gives different IDs and payloads."""
    company, ids, items = await _world(42)
    other_company, other_ids, other_items = await _world(43)
    assert company != other_company
    assert {i for group in ids for i in group}.isdisjoint(i for group in other_ids for i in group)
    assert items != other_items
