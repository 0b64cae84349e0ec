"""Route rules: versions, weights, matches, precedence, redirects, rewrites, retries, timeouts and faults.

Every test applies its rules, waits until every proxy runs them, measures, and removes them again
(waiting again), so test order never matters. Weighted routes are judged by a sequential test with a
stated false-failure rate and power (pytest_nginmesh.checks.routing), never by a fixed tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from pytest_nginmesh.bookinfo import REVIEWS_UNAVAILABLE, reviews_sampler, reviews_version
from pytest_nginmesh.checks.routing import check_weights
from pytest_nginmesh.cluster.base import Cluster
from pytest_nginmesh.kube import Obj, in_namespace
from pytest_nginmesh.mesh.applied import AppliedObjects
from pytest_nginmesh.mesh.bookinfo_instance import BookinfoInstance
from pytest_nginmesh.mesh.manifests import load_fixture
from pytest_nginmesh.profiles import Profile
from pytest_nginmesh.settings import Settings
from pytest_nginmesh.traffic import SessionPerThread, marker_count, new_marker, request_with_python

JASON = "user=jason"
ALL_V1 = "routes/route-rule-all-v1.yaml"
TEST_V2 = "routes/route-rule-reviews-test-v2.yaml"


def rule(name: str, destination: str, **spec: object) -> Obj:
    """A RouteRule for the session's Bookinfo (``mesh_rules`` places it in its namespace)."""
    return {"apiVersion": "config.istio.io/v1alpha2", "kind": "RouteRule", "metadata": {"name": name},
            "spec": {"destination": {"name": destination}, **spec}}


@pytest.fixture
def session(bookinfo: BookinfoInstance) -> Iterator[SessionPerThread]:
    """HTTP sessions for the test's requests to the session's Bookinfo, one per sampling thread."""
    with SessionPerThread(bookinfo.headers) as sessions:
        yield sessions


@pytest.fixture
def productpage(bookinfo: BookinfoInstance) -> str:
    return bookinfo.url("/productpage")


WeightJudge = Callable[..., None]


@pytest.fixture
def judge_weights(session: SessionPerThread, productpage: str, nginmesh_settings: Settings) -> WeightJudge:
    """Sample the productpage (``--nginmesh-concurrency`` requests in flight) and assert that the reviews
    versions answer with the promised weights: ``judge_weights({"v1": 50, "v3": 50}, cookie="")``."""

    def judge(expected: dict[str, float], cookie: str = "") -> None:
        verdict = check_weights(reviews_sampler(session, productpage, cookie), expected,
                                concurrency=nginmesh_settings.concurrency)
        assert verdict.passed, str(verdict)

    return judge


@pytest.mark.conformance(name="routing-default-even-spread", features=["routing-default"])
def test_without_rules_every_version_answers_about_evenly(judge_weights: WeightJudge) -> None:
    judge_weights({"v1": 1, "v2": 1, "v3": 1})


@pytest.mark.conformance(name="routing-version-all-v1", features=["routing-version"])
def test_all_v1(mesh_rules: AppliedObjects, judge_weights: WeightJudge) -> None:
    mesh_rules.apply(ALL_V1)
    judge_weights({"v1": 100})


@pytest.mark.conformance(name="routing-version-reviews-v3", features=["routing-version"])
def test_reviews_v3(mesh_rules: AppliedObjects, judge_weights: WeightJudge) -> None:
    mesh_rules.apply("routes/route-rule-reviews-v3.yaml")
    judge_weights({"v3": 100})


@pytest.mark.conformance(name="routing-weighted-50-v1-50-v3", features=["routing-weighted"])
def test_reviews_50_v1_50_v3(mesh_rules: AppliedObjects, judge_weights: WeightJudge) -> None:
    mesh_rules.apply("routes/route-rule-reviews-50-v3.yaml")
    judge_weights({"v1": 50, "v3": 50})


@pytest.mark.conformance(name="routing-weighted-75-v1-25-v2", features=["routing-weighted"])
def test_reviews_75_v1_25_v2(mesh_rules: AppliedObjects, judge_weights: WeightJudge) -> None:
    mesh_rules.apply("routes/route-rule-reviews-75-v1-25-v2.yaml")
    judge_weights({"v1": 75, "v2": 25})


@pytest.mark.conformance(name="routing-weighted-50-v2-50-v3", features=["routing-weighted"])
def test_reviews_50_v2_50_v3(mesh_rules: AppliedObjects, judge_weights: WeightJudge) -> None:
    mesh_rules.apply("routes/route-rule-reviews-v2-v3.yaml")
    judge_weights({"v2": 50, "v3": 50})


@pytest.mark.conformance(name="routing-header-match-cookie", features=["routing-header-match"])
def test_cookie_user_jason_goes_to_v2_and_nobody_else(mesh_rules: AppliedObjects,
                                                     judge_weights: WeightJudge) -> None:
    mesh_rules.apply(ALL_V1, TEST_V2)
    judge_weights({"v2": 100}, cookie=JASON)
    judge_weights({"v2": 100}, cookie="theme=dark; user=jason")
    judge_weights({"v1": 100})
    judge_weights({"v1": 100}, cookie="user=jasonx")


@pytest.mark.conformance(name="routing-precedence-higher-wins", features=["routing-precedence"])
def test_the_rule_with_the_higher_precedence_wins(mesh_rules: AppliedObjects,
                                                 judge_weights: WeightJudge) -> None:
    mesh_rules.apply(rule("reviews-strong", "reviews", precedence=5, route=[{"labels": {"version": "v1"}}]),
                     rule("reviews-weak", "reviews", precedence=1, route=[{"labels": {"version": "v3"}}]))
    judge_weights({"v1": 100})


@pytest.mark.conformance(name="routing-redirect-uri", features=["routing-redirect"])
def test_redirect(mesh_rules: AppliedObjects, session: SessionPerThread, bookinfo: BookinfoInstance,
                  mesh_profile: Profile) -> None:
    mesh_rules.apply(rule("productpage-redirect", "productpage", precedence=5,
                          match={"request": {"headers": {"uri": {"exact": "/api/v1/products"}}}},
                          redirect={"uri": "/productpage"}))
    response = session.get(bookinfo.url("/api/v1/products"), allow_redirects=False, timeout=10)
    assert response.status_code == mesh_profile.redirect_status, response.text[:200]
    assert response.headers["Location"].endswith("/productpage")
    assert session.get(bookinfo.url("/productpage"), allow_redirects=False, timeout=10).status_code == 200


@pytest.mark.conformance(name="routing-rewrite-uri", features=["routing-rewrite"])
def test_rewrite(mesh_rules: AppliedObjects, session: SessionPerThread, bookinfo: BookinfoInstance) -> None:
    assert session.get(bookinfo.url("/api/v1/products"), timeout=10).headers["Content-Type"].startswith(
        "application/json")
    mesh_rules.apply(rule("productpage-rewrite", "productpage", precedence=5,
                          match={"request": {"headers": {"uri": {"prefix": "/api/v1/products"}}}},
                          rewrite={"uri": "/productpage"}))
    response = session.get(bookinfo.url("/api/v1/products"), timeout=10)
    assert response.status_code == 200
    assert "Simple Bookstore App" in response.text, "the rewritten request should reach /productpage"


@pytest.fixture(scope="module")
def httpbin(mesh_cluster: Cluster, bookinfo: BookinfoInstance, nginmesh_settings: Settings) -> Iterator[str]:
    """Istio's httpbin sample in the Bookinfo namespace, for the retry and timeout tests. Removed again
    however its setup ends: a failed or interrupted (Ctrl-C) wait leaves no httpbin behind."""
    timeouts, namespace = nginmesh_settings.timeouts, bookinfo.namespace
    manifests = in_namespace(load_fixture("httpbin/httpbin.yaml"), namespace)
    try:
        mesh_cluster.apply(manifests)
        mesh_cluster.wait_pods_ready(namespace, timeouts.pod_ready, {"app": "httpbin"})
        mesh_cluster.wait_converged(timeouts.convergence)
        yield next(p["metadata"]["name"] for p in mesh_cluster.pods(namespace, {"app": "httpbin"}))
    finally:
        mesh_cluster.delete(list(reversed(manifests)))
        mesh_cluster.wait_pods_gone(namespace, timeouts.pod_ready, {"app": "httpbin"})
        mesh_cluster.wait_converged(timeouts.convergence)


def timed_request(cluster: Cluster, bookinfo: BookinfoInstance, url: str, cookie: str = "") -> tuple[int, float, str]:
    """GET from Bookinfo's productpage container (through its sidecar): status, seconds taken, marker."""
    pod = str(cluster.pods(bookinfo.namespace, {"app": "productpage"})[0]["metadata"]["name"])
    marker = new_marker()
    started = time.monotonic()
    status = request_with_python(cluster, bookinfo.namespace, pod, "productpage", url, marker, cookie)
    return status, time.monotonic() - started, marker


@pytest.mark.conformance(name="routing-retries-simple", features=["routing-retries"])
def test_retries(mesh_rules: AppliedObjects, mesh_cluster: Cluster, bookinfo: BookinfoInstance, httpbin: str) -> None:
    url = "http://httpbin:8000/status/503"
    status, _, marker = timed_request(mesh_cluster, bookinfo, url)
    assert status == 503
    assert marker_count(mesh_cluster, bookinfo.namespace, httpbin, "httpbin", marker) == 1, "no retries without a rule"
    mesh_rules.apply(rule("httpbin-retry", "httpbin",
                          httpReqRetries={"simpleRetry": {"attempts": 2, "perTryTimeout": "5s"}}))
    status, _, marker = timed_request(mesh_cluster, bookinfo, url)
    assert status == 503
    assert marker_count(mesh_cluster, bookinfo.namespace, httpbin, "httpbin", marker) == 3, "1 try + 2 retries"


@pytest.mark.conformance(name="routing-request-timeout-simple", features=["routing-request-timeout"])
def test_request_timeout(mesh_rules: AppliedObjects, mesh_cluster: Cluster, bookinfo: BookinfoInstance,
                         httpbin: str) -> None:
    url = "http://httpbin:8000/delay/3"
    status, seconds, _ = timed_request(mesh_cluster, bookinfo, url)
    assert status == 200 and seconds >= 3, f"without a rule: HTTP {status} after {seconds:.1f}s"
    mesh_rules.apply(rule("httpbin-timeout", "httpbin", httpReqTimeout={"simpleTimeout": {"timeout": "1s"}}))
    status, seconds, _ = timed_request(mesh_cluster, bookinfo, url)
    assert status == 504, f"a 1s timeout on a 3s request should answer 504, not {status}"
    assert 0.9 <= seconds < 2.5, f"the 1s timeout took {seconds:.2f}s"


@pytest.mark.conformance(name="fault-abort-for-one-user", features=["fault-abort"])
def test_fault_abort_for_jason_shows_on_the_page(mesh_rules: AppliedObjects, mesh_cluster: Cluster,
                                                 bookinfo: BookinfoInstance, mesh_profile: Profile,
                                                 session: SessionPerThread, productpage: str) -> None:
    release = mesh_profile.bookinfo
    mesh_rules.apply(ALL_V1, rule("reviews-v2", "reviews", precedence=2, route=[{"labels": {"version": "v2"}}]),
                     "routes/route-rule-ratings-test-abort.yaml")
    status, _, _ = timed_request(mesh_cluster, bookinfo, "http://ratings:9080/ratings/0", cookie=JASON)
    assert status == 500, "the abort's httpStatus"
    api = session.get(bookinfo.url("/api/v1/products/0/ratings"), headers={"Cookie": JASON}, timeout=10)
    assert api.status_code == release.api_status(500), "what productpage makes of the aborted ratings call"
    # Everybody reaches reviews v2; only jason's call to ratings is aborted, and his page loses its stars.
    page = session.get(productpage, headers={"Cookie": JASON}, timeout=10)
    assert page.status_code == 200 and release.ratings_failed(page.text), page.text[-400:]
    anonymous = session.get(productpage, timeout=10)
    assert reviews_version(anonymous.text) == "v2" and not release.ratings_failed(anonymous.text)


@pytest.mark.conformance(name="fault-abort-percent", features=["fault-abort"])
def test_fault_abort_percent(mesh_rules: AppliedObjects, mesh_profile: Profile, session: SessionPerThread,
                             productpage: str, nginmesh_settings: Settings) -> None:
    mesh_rules.apply("routes/route-rule-reviews-v3.yaml",
                     rule("ratings-abort-half", "ratings", precedence=3, route=[{"labels": {"version": "v1"}}],
                          httpFault={"abort": {"percent": 50, "httpStatus": 503}}))

    def sample() -> str:
        page = session.get(productpage, timeout=10)
        return "aborted" if mesh_profile.bookinfo.ratings_failed(page.text) else reviews_version(page.text)

    verdict = check_weights(sample, {"aborted": 50, "v3": 50}, concurrency=nginmesh_settings.concurrency)
    assert verdict.passed, str(verdict)


@pytest.mark.conformance(name="fault-delay-hits-productpage-timeouts", features=["fault-delay"])
def test_fault_delay_for_jason_hits_the_productpage_timeouts(mesh_rules: AppliedObjects, session: SessionPerThread,
                                                             productpage: str) -> None:
    mesh_rules.apply(ALL_V1, TEST_V2, "routes/route-rule-ratings-test-delay.yaml")
    started = time.monotonic()
    page = session.get(productpage, headers={"Cookie": JASON}, timeout=30)
    seconds = time.monotonic() - started
    # productpage gives reviews 3 s and one retry; reviews v2 would wait 10 s for the delayed ratings.
    assert REVIEWS_UNAVAILABLE in page.text, f"after {seconds:.1f}s the page shows reviews"
    assert 5.5 <= seconds <= 8.5, f"the page took {seconds:.1f}s, expected about 6s (2 x 3s timeouts)"
    started = time.monotonic()
    anonymous = session.get(productpage, timeout=30)
    assert time.monotonic() - started < 2 and reviews_version(anonymous.text) == "v1"
