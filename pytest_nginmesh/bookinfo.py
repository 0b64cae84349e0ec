"""Reading Bookinfo's productpage as a person would: which reviews version rendered it."""

from __future__ import annotations

from collections.abc import Callable

import requests

BLACK_STARS = 'color="black"'
RED_STARS = 'color="red"'
REVIEWS_UNAVAILABLE = "product reviews are currently unavailable"
RATINGS_UNAVAILABLE = "Ratings service is currently unavailable"


def reviews_version(html: str) -> str:
    """v2 renders black stars, v3 red stars, v1 none; 'unavailable' when reviews failed."""
    if REVIEWS_UNAVAILABLE in html:
        return "unavailable"
    if BLACK_STARS in html:
        return "v2"
    if RED_STARS in html:
        return "v3"
    return "v1"


def reviews_sampler(session: requests.Session, url: str, cookie: str = "",
                    timeout: float = 10.0) -> Callable[[], str]:
    """A function that loads the productpage once and says which reviews version rendered it."""
    headers = {"Cookie": cookie} if cookie else {}

    def sample() -> str:
        response = session.get(url, headers=headers, timeout=timeout)
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        return reviews_version(response.text)

    return sample
