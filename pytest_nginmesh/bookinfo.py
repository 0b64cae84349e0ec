"""Reading Bookinfo's productpage as a person would: which reviews version rendered it."""

from __future__ import annotations

BLACK_STARS = 'color="black"'
RED_STARS = 'color="red"'
REVIEWS_UNAVAILABLE = "product reviews are currently unavailable"


def reviews_version(html: str) -> str:
    """v2 renders black stars, v3 red stars, v1 none; 'unavailable' when reviews failed."""
    if REVIEWS_UNAVAILABLE in html:
        return "unavailable"
    if BLACK_STARS in html:
        return "v2"
    if RED_STARS in html:
        return "v3"
    return "v1"
