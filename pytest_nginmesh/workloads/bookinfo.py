"""Local stand-ins for Istio's Bookinfo sample services (productpage, details, reviews, ratings), each behaving as
the Bookinfo release of its image's tag (``--image-tag``, which the local image catalogue passes)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import http.client
import json
import os
import re
import signal
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from http.cookies import CookieError, Morsel, SimpleCookie
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from ..bookinfo import LOCAL, BookinfoRelease, release_of_tag
from ._common import HttpServer

__all__ = [
    "SERVICES",
    "BookinfoHandler",
    "BookinfoServer",
    "Reply",
    "Request",
    "Service",
    "main",
    "make_server",
]

Json = dict[str, Any]

TRACING_HEADERS = (
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-ot-span-context",
)
PRODUCTPAGE_TIMEOUT = 3.0
REVIEWS_TRIES = 2
MAX_STARS = 5
# reviews version -> (star colour, ratings timeout in seconds), as in the Java reviews app
STAR_STYLES: dict[str, tuple[str, float]] = {"v2": ("black", 10.0), "v3": ("red", 2.5)}

PRODUCT: Json = {
    "id": 0,
    "title": "The Comedy of Errors",
    "descriptionHtml": (
        '<a href="https://en.wikipedia.org/wiki/The_Comedy_of_Errors">Wikipedia Summary</a>: '
        "The Comedy of Errors is one of <b>William Shakespeare's</b> early plays, "
        "a farce built on two pairs of identical twins separated at birth."
    ),
}
REVIEWS: tuple[Json, ...] = (
    {
        "reviewer": "Reviewer1",
        "text": "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    },
    {
        "reviewer": "Reviewer2",
        "text": "Absolutely fun and entertaining. The play lacks thematic depth when compared "
        "to other plays by Shakespeare.",
    },
)
RATINGS: Json = {"Reviewer1": 5, "Reviewer2": 4}
RATINGS_DB_UNREACHABLE = "could not connect to ratings database"
RATINGS_DB_UNREADABLE = "could not load ratings from database"
RATINGS_DB_TIMEOUT = 5.0
DETAILS_ERROR = "Sorry, product details are currently unavailable for this book."
REVIEWS_ERROR = "Sorry, product reviews are currently unavailable for this book."
RATINGS_ERROR = "Sorry, product ratings are currently unavailable for this book."
DETAIL_FIELDS = (
    ("Type", "type"),
    ("Pages", "pages"),
    ("Publisher", "publisher"),
    ("Language", "language"),
    ("ISBN-10", "ISBN-10"),
    ("ISBN-13", "ISBN-13"),
)
ID_PATTERN = re.compile(r"-?[0-9]+")
# no proxies: upstreams are addressed directly, whatever http_proxy says
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class BadRequest(Exception):
    """The request named something malformed, such as a non-integer product id."""


@dataclass(frozen=True)
class Request:
    """What a route handler sees of an incoming request."""

    method: str
    path: str
    headers: Message
    body: bytes
    version: str
    release: BookinfoRelease  # the Bookinfo release of the image this service runs as

    def user_cookie(self) -> Morsel[str] | None:
        """The `user` cookie, if the request carries a non-empty one."""
        jar: SimpleCookie = SimpleCookie()
        try:
            jar.load(self.headers.get("Cookie", ""))
        except CookieError:
            return None
        morsel = jar.get("user")
        return morsel if morsel is not None and morsel.value else None


@dataclass(frozen=True)
class Reply:
    """A complete response: status, body and extra headers."""

    status: int
    body: bytes
    content_type: str
    headers: tuple[tuple[str, str], ...] = ()


Handler = Callable[[Request, re.Match[str]], Reply]


class Route(NamedTuple):
    """One method + path pattern and the handler serving it."""

    method: str
    pattern: re.Pattern[str]
    handler: Handler


@dataclass(frozen=True)
class Service:
    """A Bookinfo service: its routes and the versions it exists in."""

    routes: tuple[Route, ...]
    versions: tuple[str, ...]


def route(method: str, path: str, handler: Handler) -> Route:
    """Build a route whose path regex must match the whole request path."""
    return Route(method, re.compile(path), handler)


def json_reply(status: int, payload: Any) -> Reply:
    """A JSON response."""
    return Reply(status, json.dumps(payload).encode(), "application/json")


def html_reply(page: str) -> Reply:
    """A 200 HTML response."""
    return Reply(200, page.encode(), "text/html; charset=utf-8")


def redirect(location: str, cookie: str) -> Reply:
    """A 302 redirect that also sets a cookie."""
    return Reply(302, b"", "text/plain", (("Location", location), ("Set-Cookie", cookie)))


def product_id(match: re.Match[str]) -> int:
    """The integer product id captured by a route, or BadRequest."""
    text = match.group("id")
    if not ID_PATTERN.fullmatch(text):
        raise BadRequest(f"invalid product id: {text!r}")
    return int(text)


def upstream_url(service: str, path: str) -> str:
    """The URL of `path` on another service, addressed via <SERVICE>_HOSTNAME/_SERVICE_PORT."""
    prefix = service.upper()
    host = os.environ.get(f"{prefix}_HOSTNAME", service)
    port = os.environ.get(f"{prefix}_SERVICE_PORT", "9080")
    return f"http://{host}:{port}{path}"


def forward_headers(request: Request) -> dict[str, str]:
    """The user cookie and tracing headers to propagate to upstream calls."""
    headers = {name: value for name in TRACING_HEADERS if (value := request.headers.get(name))}
    user = request.user_cookie()
    if user is not None:
        headers["Cookie"] = f"user={user.coded_value}"
    return headers


class Upstream(NamedTuple):
    """What a call to another service gave: the JSON object it answered, else the status of its last try."""

    payload: Json | None
    status: int | None  # None: no answer at all


def fetch(url: str, headers: Mapping[str, str], timeout: float, tries: int = 1) -> Upstream:
    """GET a JSON object from `url`, trying up to `tries` times."""
    status = None
    for _ in range(tries):
        try:
            with OPENER.open(urllib.request.Request(url, headers=dict(headers)), timeout=timeout) as response:
                payload = json.load(response)
        except urllib.error.HTTPError as error:
            with error:
                status = error.code
            continue
        except (OSError, ValueError, http.client.HTTPException):
            status = None
            continue
        if isinstance(payload, dict):
            return Upstream(payload, 200)
        status = None
    return Upstream(None, status)


def fetch_object(url: str, headers: Mapping[str, str], timeout: float, tries: int = 1) -> Json | None:
    """GET a JSON object from `url`, trying up to `tries` times; None if every try fails."""
    return fetch(url, headers, timeout, tries).payload


def health(message: str) -> Handler:
    """A JSON health handler reporting `message`."""
    return lambda _request, _match: json_reply(200, {"status": message})


def details(_request: Request, match: re.Match[str]) -> Reply:
    """details v1: the book's details."""
    book = {
        "id": product_id(match),
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    }
    return json_reply(200, book)


def ratings(request: Request, match: re.Match[str]) -> Reply:
    """ratings v1: the stars each reviewer gave; v2: the same from its database (``ratings_from_database``)."""
    pid = product_id(match)
    if request.version != "v2":
        return json_reply(200, {"id": pid, "ratings": RATINGS})
    documents, error = ratings_from_database(os.environ.get("MONGO_DB_URL", ""))
    if documents is None:
        return json_reply(500, {"error": error})
    return json_reply(200, {"id": pid, "ratings": {"Reviewer1": documents[0].get("rating"),
                                                   "Reviewer2": documents[1].get("rating")}})


def ratings_from_database(url: str) -> tuple[list[Json] | None, str]:
    """The first two documents of collection ``ratings`` of the database ``url`` names (``mongodb://host:port/db``),
    as ratings v2 reads them (istio/istio samples/bookinfo/src/ratings/ratings.js; Istio's
    bookinfo-ratings-v2.yaml sets MONGO_DB_URL=mongodb://mongodb:27017/test), from the local mongodb image
    (pytest_nginmesh/workloads/mongodb.py); else (None, the error ratings.js answers 500 with)."""
    where = urllib.parse.urlsplit(url)
    if where.scheme != "mongodb" or not where.hostname:
        return None, RATINGS_DB_UNREACHABLE
    database = where.path.strip("/") or "test"
    try:
        with OPENER.open(f"http://{where.netloc}/{database}/ratings", timeout=RATINGS_DB_TIMEOUT) as response:
            documents = json.load(response)
    except urllib.error.HTTPError as error:
        error.close()
        return None, RATINGS_DB_UNREADABLE
    except (OSError, ValueError, http.client.HTTPException):
        return None, RATINGS_DB_UNREACHABLE
    if not isinstance(documents, list) or len(documents) < 2 or not all(isinstance(d, dict) for d in documents):
        return None, RATINGS_DB_UNREADABLE
    return documents, ""


def star_count(payload: Json | None, reviewer: str) -> int | None:
    """The stars `reviewer` gave according to a ratings payload, if it says."""
    table = payload.get("ratings") if payload is not None else None
    stars = table.get(reviewer) if isinstance(table, dict) else None
    return stars if isinstance(stars, int) else None


def rating(payload: Json | None, reviewer: str, color: str, release: BookinfoRelease) -> Json | None:
    """The rating object the reviews service attaches to one review: none when ratings failed, unless the
    release writes an error text in its place."""
    stars = star_count(payload, reviewer)
    if stars is not None:
        return {"stars": stars, "color": color}
    return {"error": release.ratings_error_text} if release.ratings_error_text is not None else None


def reviews(request: Request, match: re.Match[str]) -> Reply:
    """reviews v1/v2/v3: the reviews, rated in black (v2) or red (v3)."""
    pid = product_id(match)
    entries = [dict(review) for review in REVIEWS]
    style = STAR_STYLES.get(request.version)
    if style is not None:
        color, timeout = style
        payload = fetch_object(upstream_url("ratings", f"/ratings/{pid}"), forward_headers(request), timeout)
        for entry in entries:
            grade = rating(payload, entry["reviewer"], color, request.release)
            if grade is not None:
                entry["rating"] = grade
    return json_reply(200, {"id": str(pid), "reviews": entries})


def index(_request: Request, _match: re.Match[str]) -> Reply:
    """productpage: the landing page."""
    return html_reply(
        page(
            "<h3>Hello! This is a simple bookstore application.</h3>"
            '<p><a href="productpage">Open the product page</a></p>'
        )
    )


def productpage_health(_request: Request, _match: re.Match[str]) -> Reply:
    """productpage: plain-text health check."""
    return Reply(200, b"Product page is healthy", "text/plain; charset=utf-8")


def login(request: Request, _match: re.Match[str]) -> Reply:
    """productpage: remember the posted username in the `user` cookie."""
    form = urllib.parse.parse_qs(request.body.decode("utf-8", "replace"))
    username = form.get("username", [""])[0]
    return redirect("/productpage", f"user={urllib.parse.quote(username, safe='')}; Path=/")


def logout(_request: Request, _match: re.Match[str]) -> Reply:
    """productpage: forget the `user` cookie."""
    return redirect("/productpage", 'user=""; Expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/')


def product_page(request: Request, _match: re.Match[str]) -> Reply:
    """productpage: the book page assembled from details and reviews."""
    headers = forward_headers(request)
    book = fetch_object(upstream_url("details", "/details/0"), headers, PRODUCTPAGE_TIMEOUT)
    feedback = fetch_object(upstream_url("reviews", "/reviews/0"), headers, PRODUCTPAGE_TIMEOUT, REVIEWS_TRIES)
    user = request.user_cookie()
    name = urllib.parse.unquote(user.value) if user is not None else None
    return html_reply(page(render_user(name) + render_product(book, feedback)))


def products(_request: Request, _match: re.Match[str]) -> Reply:
    """productpage API: the catalogue."""
    return json_reply(200, [PRODUCT])


def proxy(request: Request, service: str, path: str, error: str, tries: int = 1) -> Reply:
    """Relay an upstream JSON object, or an error JSON with the status the release answers for the failure."""
    upstream = fetch(upstream_url(service, path), forward_headers(request), PRODUCTPAGE_TIMEOUT, tries)
    if upstream.payload is None:
        return json_reply(request.release.api_status(upstream.status), {"error": error})
    return json_reply(200, upstream.payload)


def product_details(request: Request, match: re.Match[str]) -> Reply:
    """productpage API: one product's details."""
    return proxy(request, "details", f"/details/{product_id(match)}", DETAILS_ERROR)


def product_reviews(request: Request, match: re.Match[str]) -> Reply:
    """productpage API: one product's reviews."""
    return proxy(request, "reviews", f"/reviews/{product_id(match)}", REVIEWS_ERROR, REVIEWS_TRIES)


def product_ratings(request: Request, match: re.Match[str]) -> Reply:
    """productpage API: one product's ratings."""
    return proxy(request, "ratings", f"/ratings/{product_id(match)}", RATINGS_ERROR)


def page(body: str) -> str:
    """Wrap `body` in the bookstore's HTML skeleton."""
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        "<title>Simple Bookstore App</title>\n</head>\n<body>\n"
        '<nav class="navbar navbar-inverse navbar-static-top">'
        '<a class="navbar-brand" href="#">BookInfo Sample</a></nav>\n'
        f"{body}\n</body>\n</html>\n"
    )


def render_user(name: str | None) -> str:
    """Who is signed in and a logout link, or the sign-in form."""
    if name is not None:
        return (
            f'<p class="navbar-text">signed in as <b>{html.escape(name)}</b> '
            '<a href="logout">sign out</a></p>\n'
        )
    return (
        '<form method="post" action="login">'
        '<input type="text" name="username" placeholder="User Name"> '
        '<input type="password" name="passwd" placeholder="Password"> '
        '<button type="submit">Sign in</button></form>\n'
    )


def render_product(book: Json | None, feedback: Json | None) -> str:
    """The title, summary, details column and reviews column."""
    return (
        f'<h3 class="text-center text-primary">{html.escape(PRODUCT["title"])}</h3>\n'
        f"<p>Summary: {PRODUCT['descriptionHtml']}</p>\n"
        f'<div class="col-md-6">\n{render_details(book)}</div>\n'
        f'<div class="col-md-6">\n{render_reviews(feedback)}</div>\n'
    )


def render_details(book: Json | None) -> str:
    """The book-details list, or the details error."""
    if book is None:
        return f'<h4 class="text-center text-primary">Error fetching product details!</h4>\n<p>{DETAILS_ERROR}</p>\n'
    rows = "".join(
        f"<dt>{label}:</dt><dd>{html.escape(str(book.get(key, '')))}</dd>\n" for label, key in DETAIL_FIELDS
    )
    return f'<h4 class="text-center text-primary">Book Details</h4>\n<dl>\n{rows}</dl>\n'


def render_reviews(feedback: Json | None) -> str:
    """One blockquote per review, or the reviews error."""
    if feedback is None:
        return f'<h4 class="text-center text-primary">Error fetching product reviews!</h4>\n<p>{REVIEWS_ERROR}</p>\n'
    entries = feedback.get("reviews")
    listed = entries if isinstance(entries, list) else []
    quotes = "".join(render_review(entry) for entry in listed if isinstance(entry, dict))
    return f'<h4 class="text-center text-primary">Book Reviews</h4>\n{quotes}'


def render_review(review: Json) -> str:
    """A review's text, reviewer and rating."""
    text = html.escape(str(review.get("text", "")))
    reviewer = html.escape(str(review.get("reviewer", "")))
    grade = review.get("rating")
    stars = render_rating(grade) if isinstance(grade, dict) else ""
    return f"<blockquote>\n<p>{text}</p>\n<small>{reviewer}</small>\n{stars}</blockquote>\n"


def render_rating(grade: Json) -> str:
    """Coloured stars for a rating, or its error message."""
    stars = grade.get("stars")
    if isinstance(stars, int):
        full = max(0, min(MAX_STARS, stars))
        glyphs = '<span class="glyphicon glyphicon-star"></span>' * full
        glyphs += '<span class="glyphicon glyphicon-star-empty"></span>' * (MAX_STARS - full)
        return f'<font color="{html.escape(str(grade.get("color", "")))}">{glyphs}</font>\n'
    if "error" in grade:
        return f"<p><i>{html.escape(str(grade['error']))}</i></p>\n"
    return ""


PRODUCT_ID = r"(?P<id>[^/]+)"
SERVICES: dict[str, Service] = {
    "productpage": Service(
        (
            route("GET", "/", index),
            route("GET", "/health", productpage_health),
            route("GET", "/productpage", product_page),
            route("POST", "/login", login),
            route("GET", "/logout", logout),
            route("GET", "/api/v1/products", products),
            route("GET", f"/api/v1/products/{PRODUCT_ID}", product_details),
            route("GET", f"/api/v1/products/{PRODUCT_ID}/reviews", product_reviews),
            route("GET", f"/api/v1/products/{PRODUCT_ID}/ratings", product_ratings),
        ),
        ("v1",),
    ),
    "details": Service(
        (route("GET", "/health", health("Details is healthy")), route("GET", f"/details/{PRODUCT_ID}", details)),
        ("v1",),
    ),
    "reviews": Service(
        (route("GET", "/health", health("Reviews is healthy")), route("GET", f"/reviews/{PRODUCT_ID}", reviews)),
        ("v1", "v2", "v3"),
    ),
    "ratings": Service(
        (route("GET", "/health", health("Ratings is healthy")), route("GET", f"/ratings/{PRODUCT_ID}", ratings)),
        ("v1", "v2"),
    ),
}


def dispatch(routes: Sequence[Route], request: Request) -> Reply:
    """Run the handler whose method and path match, mapping BadRequest to 400 and no match to 404."""
    for candidate in routes:
        match = candidate.pattern.fullmatch(request.path)
        if match is not None and candidate.method == request.method:
            try:
                return candidate.handler(request, match)
            except BadRequest as error:
                return json_reply(400, {"error": str(error)})
    return json_reply(404, {"error": f"not found: {request.path}"})


class BookinfoHandler(BaseHTTPRequestHandler):
    """Serves one Bookinfo service and logs each request to stdout."""

    server_version = "bookinfo/0.2"

    def __init__(self, *args: Any, name: str, version: str, release: BookinfoRelease, **kwargs: Any) -> None:
        self.service_name = name
        self.service_version = version
        self.release = release
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        self.respond()

    def do_POST(self) -> None:
        self.respond()

    def respond(self) -> None:
        """Route the current request and write the reply."""
        request = Request(self.command, urllib.parse.urlsplit(self.path).path, self.headers, self.read_body(),
                          self.service_version, self.release)
        reply = dispatch(SERVICES[self.service_name].routes, request)
        self.send_response(reply.status)
        self.send_header("Content-Type", reply.content_type)
        self.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(reply.body)

    def read_body(self) -> bytes:
        """The request body as announced by Content-Length (empty if absent or invalid)."""
        length = self.headers.get("Content-Length", "0")
        return self.rfile.read(int(length)) if length.isdigit() else b""

    def log_message(self, format: str, *args: Any) -> None:
        prefix = f"{self.service_name}-{self.service_version} {self.address_string()}"
        print(f"{prefix} [{self.log_date_time_string()}] {format % args}", flush=True)


class BookinfoServer(HttpServer):
    """Threaded HTTP server that does not wait for request threads and rebinds quickly."""

    allow_reuse_address = True


def make_server(name: str, version: str, bind: str, port: int, release: BookinfoRelease = LOCAL) -> BookinfoServer:
    """A server for service `name` at `version` of a Bookinfo release, bound but not yet serving."""
    handler = functools.partial(BookinfoHandler, name=name, version=version, release=release)
    return BookinfoServer((bind, port), handler)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line arguments, with the version checked against the service."""
    parser = argparse.ArgumentParser(prog="python -m pytest_nginmesh.workloads.bookinfo", description=__doc__)
    parser.add_argument("service", choices=sorted(SERVICES))
    parser.add_argument("version", help="v1 for every service; reviews also has v2 (black) and v3 (red), ratings "
                                        "v2 (from MongoDB)")
    parser.add_argument("--port", type=int, default=9080)
    parser.add_argument("--bind", default="0.0.0.0")
    parser.add_argument("--image-tag", default=LOCAL.tag,
                        help="the image tag: the Bookinfo release to behave as (a tag of no release: the local one)")
    args = parser.parse_args(argv)
    versions = SERVICES[args.service].versions
    if args.version not in versions:
        parser.error(f"{args.service} has versions {', '.join(versions)}, not {args.version}")
    return args


def serve_until_signalled(server: BookinfoServer) -> None:
    """Serve until SIGTERM or SIGINT arrives (both surface as KeyboardInterrupt)."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one Bookinfo service until signalled; returns the exit status."""
    args = parse_args(argv)
    release = release_of_tag(args.image_tag)
    with make_server(args.service, args.version, args.bind, args.port, release) as server:
        host, port = server.server_address[:2]
        print(f"{args.service}-{args.version} (Bookinfo {release.tag}) listening on {host!s}:{port}", flush=True)
        serve_until_signalled(server)
    return 0


if __name__ == "__main__":
    sys.exit(main())
