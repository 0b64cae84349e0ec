"""Smoke: Bookinfo answers through the mesh ingress, and every reviews version takes part."""

from collections import Counter

import pytest

from pytest_nginmesh.bookinfo import REVIEWS_VERSIONS, reviews_version
from pytest_nginmesh.mesh.bookinfo_instance import BookinfoInstance
from pytest_nginmesh.traffic import SessionPerThread

REQUESTS = 30


@pytest.mark.conformance(name="smoke-productpage-all-versions", features=["ingress"])
def test_productpage_serves_all_reviews_versions(bookinfo: BookinfoInstance) -> None:
    url = bookinfo.url("/productpage")
    seen: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    with SessionPerThread(bookinfo.headers) as session:
        for _ in range(REQUESTS):
            response = session.get(url, timeout=10)
            statuses[response.status_code] += 1
            seen[reviews_version(response.text)] += 1
    assert statuses == {200: REQUESTS}
    assert set(seen) == set(REVIEWS_VERSIONS), f"reviews versions seen: {dict(seen)}"
