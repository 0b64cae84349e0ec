"""Reading Bookinfo's productpage as a person would: which reviews version rendered it, and did ratings fail."""

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


@dataclass(frozen=True)
class BookinfoRelease:
    """How one release's Bookinfo shows failures (the profiles say which release a mesh ships)."""

    ratings_error_text: str | None  # what reviews v2/v3 write when ratings fails; None: the stars just go
    productpage_passes_status: bool  # productpage's API answers with the failed upstream's status (else 503)

    def ratings_failed(self, html: str) -> bool:
        """Whether a page rendered by reviews v2 or v3 shows that its ratings call failed."""
        if self.ratings_error_text is not None:
            return self.ratings_error_text in html
        return REVIEWS_UNAVAILABLE not in html and BLACK_STARS not in html and RED_STARS not in html

    def api_status(self, upstream_status: int) -> int:
        """The status productpage's API answers when the upstream it relays failed with this status."""
        return upstream_status if self.productpage_passes_status else 503


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
