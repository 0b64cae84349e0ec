"""Istio's Bookinfo sample, release by release: what each release's images do when a call fails, and reading its
productpage as a person would (which reviews version rendered it, and did ratings fail)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # requests costs ~80 ms to import; profiles (read by the plugin at start) import this module
    import requests

BLACK_STARS = 'color="black"'
RED_STARS = 'color="red"'
REVIEWS_UNAVAILABLE = "product reviews are currently unavailable"
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"
REVIEWS_VERSIONS = ("v1", "v2", "v3")  # the reviews Deployments of samples/bookinfo/kube/bookinfo.yaml
# productpage answers 500 for an upstream that gave no answer at all (istio/istio
# samples/bookinfo/src/productpage/productpage.py: status = res.status_code if res ... else 500).
NO_ANSWER_STATUS = 500


@dataclass(frozen=True)
class BookinfoRelease:
    """One release of Bookinfo: the tag its bookinfo.yaml gives every istio/examples-bookinfo-* image, the
    fixture that deploys it, and how its services show a failed call. The local image catalogue runs each
    Bookinfo image as the release of its tag."""

    tag: str
    fixture: str  # the release's bookinfo.yaml, below fixtures/
    ratings_error_text: str | None  # what reviews v2/v3 write when ratings fails; None: the stars just go
    productpage_passes_status: bool  # productpage's API answers with the failed upstream's status (else 503)

    def ratings_failed(self, html: str) -> bool:
        """Whether a page rendered by reviews v2 or v3 shows that its ratings call failed."""
        if self.ratings_error_text is not None:
            return self.ratings_error_text in html
        return REVIEWS_UNAVAILABLE not in html and BLACK_STARS not in html and RED_STARS not in html

    def api_status(self, upstream_status: int | None) -> int:
        """The status productpage's API answers when the upstream it relays failed with this status (None: it
        gave no answer)."""
        if not self.productpage_passes_status:
            return 503
        return upstream_status if upstream_status is not None else NO_ANSWER_STATUS


# Each Istio release's samples/bookinfo/kube/bookinfo.yaml names istio/examples-bookinfo-<service>-<version>
# images of one tag: 0.2.3 in Istio 0.2.12 (Nginmesh 0.2.12 deploys a copy, "copied from Istio project without
# modification": nginmesh/nginmesh README.md at 0.2.12; the seed's injected reviews-v3 pod runs it), 0.2.8 in
# Istio 0.3.0 (the Istio 0.3/0.4 image lists name istio/examples-bookinfo-*:0.2.8), 1.5.0 in Istio 0.7.1 (the
# webhook-era copies of the file; 1.6.0 followed on master). Their reviews write "Ratings service is currently
# unavailable" only from Istio 0.5.0 on (istio/istio samples/bookinfo/src/reviews/reviews-application/
# .../LibertyRestEndpoint.java); before, a review whose ratings call failed has no rating, so no stars.
# productpage relays an upstream's own status in every release (samples/bookinfo/src/productpage/productpage.py,
# getProductRatings: return status, {'error': ...}).
ISTIO_0_2_12 = BookinfoRelease("0.2.3", "bookinfo/bookinfo-istio-0.2.12.yaml", None, productpage_passes_status=True)
ISTIO_0_3_0 = BookinfoRelease("0.2.8", "bookinfo/bookinfo-istio-0.3.0.yaml", None, productpage_passes_status=True)
ISTIO_0_7_1 = BookinfoRelease("1.5.0", "bookinfo/bookinfo-istio-0.7.1.yaml", RATINGS_UNAVAILABLE,
                              productpage_passes_status=True)
# The local reference Bookinfo (pytest_nginmesh/workloads/bookinfo.py): the error text, and 503 for an API call
# whose upstream failed. Its fixture tags the images "local"; any tag no release uses (none: "latest") runs it.
LOCAL = BookinfoRelease("local", "bookinfo/bookinfo.yaml", RATINGS_UNAVAILABLE, productpage_passes_status=False)
RELEASES_BY_TAG = {release.tag: release for release in (ISTIO_0_2_12, ISTIO_0_3_0, ISTIO_0_7_1, LOCAL)}


def release_of_tag(tag: str) -> BookinfoRelease:
    """The Bookinfo release whose images carry this tag; the local reference for any other tag."""
    return RELEASES_BY_TAG.get(tag, LOCAL)


def reviews_version(html: str) -> str:
    """v2 renders black stars, v3 red stars, v1 none; 'unavailable' when reviews failed."""
    if REVIEWS_UNAVAILABLE in html:
        return "unavailable"
    if BLACK_STARS in html:
        return "v2"
    if RED_STARS in html:
        return "v3"
    return "v1"


class HttpGetter(Protocol):
    """What sends the GETs: a ``requests.Session``, or one session per thread for concurrent sampling."""

    def get(self, url: str, **kwargs: Any) -> requests.Response: ...


def reviews_sampler(session: HttpGetter, url: str, cookie: str = "", timeout: float = 10.0) -> Callable[[], str]:
    """A function that loads the productpage once and says which reviews version rendered it (safe to call
    from several threads when ``session`` is)."""
    headers = {"Cookie": cookie} if cookie else {}

    def sample() -> str:
        response = session.get(url, headers=headers, timeout=timeout)
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        return reviews_version(response.text)

    return sample
