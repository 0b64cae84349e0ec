"""Istio RouteRule parsing and validation (pytest_nginmesh.routerules), on Istio's Bookinfo samples and on
hand-made rules that an API server must refuse."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_nginmesh.errors import ManifestError, UsageError
from pytest_nginmesh.kube import Obj, read_manifest_file
from pytest_nginmesh.routerules import (
    API_VERSION,
    SPEC_FIELDS,
    Fault,
    HeaderMatch,
    RouteRule,
    WeightedRoute,
    parse_duration,
    parse_route_rule,
)

REPO = Path(__file__).resolve().parents[2]
ROUTES = REPO / "fixtures" / "routes"
JASON_REGEX = "^(.*?;)?(user=jason)(;.*)?$"
JASON_COOKIE = HeaderMatch("cookie", "regex", JASON_REGEX)
RULE_NAME = "test-rule"


def version(value: str, weight: int = 100) -> WeightedRoute:
    return WeightedRoute((("version", value),), weight)


def rule_object(spec: Any, name: str = RULE_NAME, namespace: str | None = "default",
                api_version: str = API_VERSION) -> Obj:
    metadata: dict[str, str] = {"name": name}
    if namespace is not None:
        metadata["namespace"] = namespace
    return {"apiVersion": api_version, "kind": "RouteRule", "metadata": metadata, "spec": spec}


def parse(spec: Any) -> RouteRule:
    return parse_route_rule(rule_object(spec))


def refusal(spec: Any) -> str:
    """The message of the ManifestError that parsing a rule with this spec raises."""
    with pytest.raises(ManifestError) as caught:
        parse(spec)
    return str(caught.value)


def to_reviews(**fields: Any) -> dict[str, Any]:
    """A spec for the reviews service with the given extra fields."""
    return {"destination": {"name": "reviews"}, **fields}


# -- Istio's Bookinfo samples ----------------------------------------------------------------------

Summary = tuple[str, str, int, tuple[HeaderMatch, ...], tuple[WeightedRoute, ...], Fault | None, Fault | None]

EXPECTED_SAMPLES: dict[str, list[Summary]] = {
    "route-rule-all-v1.yaml": [
        ("productpage-default", "productpage", 1, (), (version("v1"),), None, None),
        ("reviews-default", "reviews", 1, (), (version("v1"),), None, None),
        ("ratings-default", "ratings", 1, (), (version("v1"),), None, None),
        ("details-default", "details", 1, (), (version("v1"),), None, None),
    ],
    "route-rule-ratings-test-abort.yaml": [
        ("ratings-test-abort", "ratings", 2, (JASON_COOKIE,), (version("v1"),), None, Fault(100.0, status=500)),
    ],
    "route-rule-ratings-test-delay.yaml": [
        ("ratings-test-delay", "ratings", 2, (JASON_COOKIE,), (version("v1"),), Fault(100.0, delay=7.0), None),
    ],
    "route-rule-reviews-50-v3.yaml": [
        ("reviews-default", "reviews", 1, (), (version("v1", 50), version("v3", 50)), None, None),
    ],
    "route-rule-reviews-75-v1-25-v2.yaml": [
        ("reviews-default", "reviews", 1, (), (version("v1", 75), version("v2", 25)), None, None),
    ],
    "route-rule-reviews-test-v2.yaml": [
        ("reviews-test-v2", "reviews", 2, (JASON_COOKIE,), (version("v2"),), None, None),
    ],
    "route-rule-reviews-v2-v3.yaml": [
        ("reviews-default", "reviews", 2, (), (version("v2", 50), version("v3", 50)), None, None),
    ],
    "route-rule-reviews-v3.yaml": [
        ("reviews-default", "reviews", 1, (), (version("v3"),), None, None),
    ],
}


def summary(rule: RouteRule) -> Summary:
    return (rule.name, rule.destination, rule.precedence, rule.headers, rule.routes, rule.delay, rule.abort)


def test_every_sample_file_has_expectations() -> None:
    assert sorted(p.name for p in ROUTES.glob("*.yaml")) == sorted(EXPECTED_SAMPLES)


@pytest.mark.parametrize("file_name", sorted(EXPECTED_SAMPLES))
def test_sample_parses_into_the_expected_rules(file_name: str) -> None:
    objects = read_manifest_file(str(ROUTES / file_name))
    rules = [parse_route_rule(obj) for obj in objects]
    assert [summary(rule) for rule in rules] == EXPECTED_SAMPLES[file_name]


@pytest.mark.parametrize("file_name", sorted(EXPECTED_SAMPLES))
def test_sample_leaves_the_other_fields_at_their_defaults(file_name: str) -> None:
    for obj in read_manifest_file(str(ROUTES / file_name)):
        rule = parse_route_rule(obj)
        assert (rule.namespace, rule.destination_namespace) == ("default", "default")
        assert (rule.source_name, rule.source_labels) == (None, ())
        assert (rule.redirect_uri, rule.redirect_authority, rule.rewrite_uri, rule.rewrite_authority) == (
            None, None, None, None)
        assert (rule.timeout, rule.retry_attempts, rule.retry_per_try_timeout) == (None, 0, None)
        assert rule.uri_match is None


def test_multi_document_file_keeps_the_document_order() -> None:
    rules = [parse_route_rule(obj) for obj in read_manifest_file(str(ROUTES / "route-rule-all-v1.yaml"))]
    assert [r.destination for r in rules] == ["productpage", "reviews", "ratings", "details"]


# -- a full rule -----------------------------------------------------------------------------------


def test_every_supported_field_is_carried_into_the_model() -> None:
    spec = {
        "destination": {"name": "ratings", "namespace": "shop"},
        "precedence": 4,
        "match": {"source": {"name": "reviews", "labels": {"version": "v2"}},
                  "request": {"headers": {"uri": {"prefix": "/ratings"}, "x-user": {"exact": "jason"}}}},
        "route": [{"labels": {"version": "v1"}, "weight": 90}, {"labels": {"version": "v2"}, "weight": 10}],
        "rewrite": {"uri": "/v1/ratings", "authority": "ratings.shop"},
        "httpReqTimeout": {"simpleTimeout": {"timeout": "3s"}},
        "httpReqRetries": {"simpleRetry": {"attempts": 2, "perTryTimeout": "500ms"}},
        "httpFault": {"delay": {"percent": 10, "fixedDelay": "1.5s"}, "abort": {"percent": 2.5, "httpStatus": 503}},
    }
    rule = parse_route_rule(rule_object(spec, name="ratings-all", namespace="default"))
    assert rule == RouteRule(
        name="ratings-all", namespace="default", destination="ratings", destination_namespace="shop", precedence=4,
        source_name="reviews", source_labels=(("version", "v2"),),
        headers=(HeaderMatch("uri", "prefix", "/ratings"), HeaderMatch("x-user", "exact", "jason")),
        routes=(version("v1", 90), version("v2", 10)),
        redirect_uri=None, redirect_authority=None, rewrite_uri="/v1/ratings", rewrite_authority="ratings.shop",
        timeout=3.0, retry_attempts=2, retry_per_try_timeout=0.5,
        delay=Fault(10.0, delay=1.5), abort=Fault(2.5, status=503),
    )
    assert rule.uri_match == HeaderMatch("uri", "prefix", "/ratings")


def test_namespace_defaults_to_default_for_rule_and_destination() -> None:
    rule = parse_route_rule(rule_object(to_reviews(), namespace=None))
    assert (rule.namespace, rule.destination_namespace) == ("default", "default")


def test_destination_namespace_defaults_to_the_rules_namespace() -> None:
    rule = parse_route_rule(rule_object(to_reviews(), namespace="shop"))
    assert (rule.namespace, rule.destination_namespace) == ("shop", "shop")


def test_rule_without_route_has_no_routes_and_precedence_zero() -> None:
    rule = parse(to_reviews())
    assert (rule.routes, rule.precedence) == ((), 0)


def test_single_route_without_weight_gets_100() -> None:
    assert parse(to_reviews(route=[{"labels": {"version": "v2"}}])).routes == (version("v2"),)


def test_weight_zero_is_allowed() -> None:
    rule = parse(to_reviews(route=[{"labels": {"version": "v1"}, "weight": 0},
                                   {"labels": {"version": "v2"}, "weight": 100}]))
    assert rule.routes == (version("v1", 0), version("v2", 100))


def test_route_labels_are_sorted_by_key() -> None:
    rule = parse(to_reviews(route=[{"labels": {"version": "v2", "app": "reviews"}}]))
    assert rule.routes[0].labels == (("app", "reviews"), ("version", "v2"))


@pytest.mark.parametrize(("name", "expected"), [(":authority", "authority"), (":uri", "uri"), ("cookie", "cookie"),
                                                ("x_b3_flags", "x_b3_flags")])
def test_header_names_lose_their_colon(name: str, expected: str) -> None:
    rule = parse(to_reviews(match={"request": {"headers": {name: {"exact": "1"}}}}))
    assert rule.headers == (HeaderMatch(expected, "exact", "1"),)


def test_timeout_without_value_defaults_to_15s() -> None:
    assert parse(to_reviews(httpReqTimeout={"simpleTimeout": {}})).timeout == 15.0


def test_fault_percent_defaults_to_100() -> None:
    rule = parse(to_reviews(httpFault={"delay": {"fixedDelay": "2s"}, "abort": {"httpStatus": 404}}))
    assert (rule.delay, rule.abort) == (Fault(100.0, delay=2.0), Fault(100.0, status=404))


# -- durations -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [("7s", 7.0), ("1.5s", 1.5), ("500ms", 0.5), ("1m0s", 60.0),
                                               ("1h", 3600.0), ("2m30s", 150.0), ("250us", 0.00025),
                                               ("1000000ns", 0.001)])
def test_duration_in_seconds(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "7", "", "s", "-1s", "1.s", "7 seconds", "1d"])
def test_duration_refused(text: str) -> None:
    with pytest.raises(ManifestError, match="is not a duration; write it like 7s"):
        parse_duration(text)


@pytest.mark.parametrize("value", [7, 1.5, None])
def test_duration_that_is_not_text_is_refused(value: Any) -> None:
    with pytest.raises(ManifestError, match="is not a duration"):
        parse_duration(value)


def test_bad_duration_in_a_rule_names_the_field() -> None:
    message = refusal(to_reviews(httpReqTimeout={"simpleTimeout": {"timeout": "soon"}}))
    assert "spec.httpReqTimeout.simpleTimeout.timeout: 'soon' is not a duration" in message


def test_bad_fixed_delay_names_the_field() -> None:
    message = refusal(to_reviews(httpFault={"delay": {"fixedDelay": "7"}}))
    assert "spec.httpFault.delay.fixedDelay: '7' is not a duration" in message


# -- refusals --------------------------------------------------------------------------------------


def test_manifest_error_is_a_usage_error() -> None:
    assert issubclass(ManifestError, UsageError)


@pytest.mark.parametrize("api_version", ["config.istio.io/v1alpha1", "networking.istio.io/v1alpha3", ""])
def test_wrong_api_version_is_refused(api_version: str) -> None:
    with pytest.raises(ManifestError) as caught:
        parse_route_rule(rule_object(to_reviews(), api_version=api_version))
    assert f"routerule/default/{RULE_NAME}: apiVersion must be config.istio.io/v1alpha2, not {api_version!r}" in str(
        caught.value)


def test_unknown_spec_field_lists_the_allowed_ones() -> None:
    message = refusal(to_reviews(destinaton={"name": "reviews"}))
    assert "unknown field(s) destinaton" in message
    allowed = message.split("allowed: ", 1)[1]
    assert allowed.split(", ") == sorted(SPEC_FIELDS)


@pytest.mark.parametrize("field", ["mirror", "corsPolicy", "l4Fault", "appendHeaders"])
def test_unsupported_istio_field_is_refused_by_name(field: str) -> None:
    assert f"spec.{field} is not supported by this mesh" in refusal(to_reviews(**{field: {}}))


@pytest.mark.parametrize("spec", [{}, {"precedence": 1}, {"destination": {}}, {"destination": {"namespace": "x"}},
                                  {"destination": {"name": ""}}, {"destination": {"name": 5}}],
                         ids=["empty", "no-destination", "empty-destination", "no-name", "empty-name", "int-name"])
def test_missing_destination_name_is_refused(spec: dict[str, Any]) -> None:
    assert "spec.destination.name is required" in refusal(spec)


def test_spec_that_is_not_a_mapping_is_refused() -> None:
    assert "spec must be a mapping, not list" in refusal(["destination"])


def test_unknown_destination_field_is_refused() -> None:
    assert "spec.destination: unknown field(s) port" in refusal({"destination": {"name": "a", "port": 80}})


@pytest.mark.parametrize("precedence", ["1", 1.5, True])
def test_precedence_must_be_an_integer(precedence: Any) -> None:
    assert "spec.precedence must be an integer" in refusal(to_reviews(precedence=precedence))


@pytest.mark.parametrize(("weights", "shown"), [((50, 40), "50 + 40 = 90"), ((60, 60), "60 + 60 = 120"),
                                                ((30, 30, 30), "30 + 30 + 30 = 90"), ((50,), "50 = 50")])
def test_weights_must_sum_to_100(weights: tuple[int, ...], shown: str) -> None:
    routes = [{"labels": {"version": f"v{i}"}, "weight": w} for i, w in enumerate(weights, 1)]
    assert f"route weights must sum to 100, not {shown}" in refusal(to_reviews(route=routes))


def test_a_route_without_weight_among_several_weighs_zero() -> None:
    # Pilot 0.2.12: the proto default 0, then the sum must be 100.
    rule = parse(to_reviews(route=[{"labels": {"version": "v1"}, "weight": 100}, {"labels": {"version": "v2"}}]))
    assert rule.routes == (version("v1", 100), version("v2", 0))
    assert "route weights must sum to 100, not 0 + 0 = 0" in refusal(
        to_reviews(route=[{"labels": {"version": "v1"}}, {"labels": {"version": "v2"}}]))


def test_a_single_route_of_weight_zero_weighs_100() -> None:
    assert parse(to_reviews(route=[{"labels": {"version": "v2"}, "weight": 0}])).routes == (version("v2"),)


@pytest.mark.parametrize("weight", [101, -1, 1000])
def test_weight_out_of_range_is_refused(weight: int) -> None:
    message = refusal(to_reviews(route=[{"labels": {"version": "v1"}, "weight": weight}]))
    assert "spec.route[0].weight must be an integer from 0 to 100" in message


@pytest.mark.parametrize("weight", ["100", 100.0, 50.5, True, None])
def test_weight_that_is_not_an_integer_is_refused(weight: Any) -> None:
    assert "spec.route[0].weight must be an integer" in refusal(to_reviews(route=[{"weight": weight}]))


@pytest.mark.parametrize("route", [[], "v1", {"labels": {"version": "v1"}}])
def test_route_must_be_a_non_empty_list(route: Any) -> None:
    assert "spec.route must be a non-empty list" in refusal(to_reviews(route=route))


def test_bad_regex_is_refused_naming_it() -> None:
    message = refusal(to_reviews(match={"request": {"headers": {"cookie": {"regex": "user=(jason"}}}}))
    assert "spec.match.request.headers.cookie: regex 'user=(jason' does not compile" in message


@pytest.mark.parametrize("condition", [{"exact": "a", "prefix": "b"}, {"prefix": "a", "regex": "b"}, {},
                                       {"exact": 1}, {"exact": None}],
                         ids=["exact+prefix", "prefix+regex", "none", "int", "null"])
def test_header_condition_needs_exactly_one_kind(condition: dict[str, Any]) -> None:
    message = refusal(to_reviews(match={"request": {"headers": {"cookie": condition}}}))
    assert "spec.match.request.headers.cookie: give exactly one of exact, prefix or regex, as a string" in message


def test_unknown_header_condition_kind_is_refused() -> None:
    message = refusal(to_reviews(match={"request": {"headers": {"cookie": {"suffix": "x"}}}}))
    assert "unknown field(s) suffix" in message


@pytest.mark.parametrize("name", ["x user", "x:user", "cookie;", ""])
def test_bad_header_name_is_refused(name: str) -> None:
    message = refusal(to_reviews(match={"request": {"headers": {name: {"exact": "1"}}}}))
    assert "header names are letters, digits, '-' and '_'" in message


@pytest.mark.parametrize("fault", ["abort", "delay"])
@pytest.mark.parametrize("percent", [101, -0.5, 1000, "50", True])
def test_fault_percent_must_be_0_to_100(fault: str, percent: Any) -> None:
    body: dict[str, Any] = {"abort": {"percent": percent, "httpStatus": 500},
                            "delay": {"percent": percent, "fixedDelay": "1s"}}
    message = refusal(to_reviews(httpFault={fault: body[fault]}))
    assert f"spec.httpFault.{fault}: percent must be a number from 0 to 100, not {percent!r}" in message


@pytest.mark.parametrize("percent", [0, 0.5, 100])
def test_fault_percent_bounds_are_accepted(percent: float) -> None:
    rule = parse(to_reviews(httpFault={"abort": {"percent": percent, "httpStatus": 500}}))
    assert rule.abort == Fault(float(percent), status=500)


@pytest.mark.parametrize("status", [-1, 601, 1000, "500", True])
def test_http_status_must_be_0_to_600(status: Any) -> None:
    message = refusal(to_reviews(httpFault={"abort": {"percent": 50, "httpStatus": status}}))
    assert "spec.httpFault.abort.httpStatus must be a status from 0 to 600" in message


@pytest.mark.parametrize("status", [0, 200, 599, 600])
def test_http_status_bounds_are_accepted_as_pilot_does(status: int) -> None:
    rule = parse(to_reviews(httpFault={"abort": {"httpStatus": status}}))
    assert rule.abort is not None and rule.abort.status == status


@pytest.mark.parametrize("abort", [{"percent": 50}, {"percent": 50, "http2Error": "x"}], ids=["nothing", "http2"])
def test_abort_without_http_status_is_accepted_and_aborts_nothing(abort: dict[str, Any]) -> None:
    assert parse(to_reviews(httpFault={"abort": abort})).abort is None


def test_grpc_abort_is_refused_as_pilot_does() -> None:
    assert "Istio does not support gRPC fault injection yet" in refusal(
        to_reviews(httpFault={"abort": {"grpcStatus": "UNAVAILABLE"}}))


@pytest.mark.parametrize("attempts", [-1, "3", 2.5, True])
def test_retry_attempts_must_be_a_whole_number(attempts: Any) -> None:
    message = refusal(to_reviews(httpReqRetries={"simpleRetry": {"attempts": attempts}}))
    assert f"simpleRetry.attempts must be an integer of 0 or more, not {attempts!r}" in message


@pytest.mark.parametrize("attempts", [0, 11, 100])
def test_any_attempts_of_0_or_more_are_accepted(attempts: int) -> None:
    assert parse(to_reviews(httpReqRetries={"simpleRetry": {"attempts": attempts}})).retry_attempts == attempts


@pytest.mark.parametrize("other", [{"route": [{"labels": {"version": "v1"}}]}, {"rewrite": {"uri": "/v2"}},
                                   {"httpFault": {"abort": {"httpStatus": 500}}}])
def test_redirect_cannot_be_combined_with_route_rewrite_or_fault(other: dict[str, Any]) -> None:
    message = refusal(to_reviews(redirect={"uri": "/new"}, **other))
    assert "spec.redirect cannot be combined with route, rewrite or httpFault; use one" in message


@pytest.mark.parametrize("field", ["redirect", "rewrite"])
def test_redirect_and_rewrite_need_a_uri_or_an_authority(field: str) -> None:
    assert f"spec.{field} must specify uri, authority, or both" in refusal(to_reviews(**{field: {}}))


def test_redirect_alone_is_accepted() -> None:
    rule = parse(to_reviews(redirect={"uri": "/new", "authority": "other"}))
    assert (rule.redirect_uri, rule.redirect_authority) == ("/new", "other")


def test_delay_needs_fixed_delay() -> None:
    message = refusal(to_reviews(httpFault={"delay": {"percent": 50, "exponentialDelay": {"meanDelay": "1s"}}}))
    assert "spec.httpFault.delay needs fixedDelay" in message


@pytest.mark.parametrize("value", [1, 1.0, True, None, ["v1"]])
def test_route_label_values_must_be_strings(value: Any) -> None:
    message = refusal(to_reviews(route=[{"labels": {"version": value}}]))
    assert f"spec.route[0].labels: label version must be a string (quote it), not {value!r}" in message


def test_source_label_values_must_be_strings() -> None:
    message = refusal(to_reviews(match={"source": {"name": "productpage", "labels": {"version": 2}}}))
    assert "match.source.labels: label version must be a string (quote it), not 2" in message


@pytest.mark.parametrize(("spec", "where"), [
    (to_reviews(match={"request": {"body": {}}}), "spec.match.request: unknown field(s) body"),
    (to_reviews(match={"destination": {}}), "spec.match: unknown field(s) destination"),
    (to_reviews(redirect={"path": "/x"}), "spec.redirect: unknown field(s) path"),
    (to_reviews(httpReqRetries={"simpleRetry": {"tries": 2}}), "simpleRetry: unknown field(s) tries"),
    (to_reviews(httpFault={"drop": {}}), "spec.httpFault: unknown field(s) drop"),
], ids=["request", "match", "redirect", "retry", "fault"])
def test_unknown_nested_fields_are_refused(spec: dict[str, Any], where: str) -> None:
    assert where in refusal(spec)


def test_refusal_names_the_rule() -> None:
    with pytest.raises(ManifestError, match=r"^routerule/shop/broken: "):
        parse_route_rule(rule_object({}, name="broken", namespace="shop"))


# -- what Pilot 0.2.12 accepts beyond this mesh's first validation ----------------------------------------


def test_route_labels_no_pod_carries_are_accepted() -> None:
    rule = parse(to_reviews(route=[{"labels": {"version": "v9"}}]))
    assert rule.routes == (version("v9"),)


def test_destination_given_as_service_fqdn() -> None:
    rule = parse({"destination": {"service": "reviews.shop.svc.cluster.local"}})
    assert (rule.destination, rule.destination_namespace) == ("reviews", "shop")


def test_route_destination_is_accepted() -> None:
    rule = parse(to_reviews(route=[{"destination": {"name": "reviews"}, "labels": {"version": "v1"}}]))
    assert rule.routes == (version("v1"),)


def test_match_tcp_is_accepted_and_udp_refused() -> None:
    assert parse(to_reviews(match={"tcp": {"sourceSubnet": ["10.0.0.0/8"]}})).headers == ()
    assert "Istio does not support UDP protocol yet" in refusal(to_reviews(match={"udp": {}}))


def test_websocket_upgrade_is_accepted() -> None:
    assert parse(to_reviews(websocketUpgrade=True)).destination == "reviews"
    assert "spec.websocketUpgrade must be true or false" in refusal(to_reviews(websocketUpgrade={}))


@pytest.mark.parametrize("name", ["URI", "Cookie", "X-User"])
def test_upper_case_header_names_are_refused_as_pilot_does(name: str) -> None:
    message = refusal(to_reviews(match={"request": {"headers": {name: {"exact": "1"}}}}))
    assert f"header names must be in lower case; write {name.lower()}" in message


def test_empty_uri_match_is_refused() -> None:
    assert "the uri to match must be non-empty" in refusal(to_reviews(match={"request": {"headers": {
        "uri": {"prefix": ""}}}}))


# -- HeaderMatch.pattern ---------------------------------------------------------------------------


def test_exact_pattern_escapes_regex_characters() -> None:
    pattern = re.compile(HeaderMatch("x-user", "exact", "a.b+(c)*").pattern())
    assert pattern.search("a.b+(c)*")
    for other in ("aXb+(c)*", "a.bb(c)", "a.b+(c)*!", "!a.b+(c)*", "a.b+(c)"):
        assert not pattern.search(other), other


def test_prefix_pattern_matches_the_start_only() -> None:
    pattern = re.compile(HeaderMatch("uri", "prefix", "/api/v1.0").pattern())
    assert pattern.search("/api/v1.0")
    assert pattern.search("/api/v1.0/products?x=1")
    assert not pattern.search("/api/v1x0")
    assert not pattern.search("/x/api/v1.0")


def test_regex_pattern_is_anchored_as_a_full_match() -> None:
    pattern = re.compile(HeaderMatch("x-user", "regex", "jason|bob").pattern())
    assert pattern.search("jason")
    assert pattern.search("bob")
    for other in ("jason2", "xbob", "jasonbob", ""):
        assert not pattern.search(other), other


def test_istio_cookie_regex_matches_jason_among_cookies() -> None:
    pattern = re.compile(JASON_COOKIE.pattern())
    for cookie in ("user=jason", "a=1;user=jason", "user=jason;b=2", "a=1;user=jason;b=2"):
        assert pattern.search(cookie), cookie
    for cookie in ("user=jasonx", "user=bob", "", "xuser=jason2"):
        assert not pattern.search(cookie), cookie


# -- Nginmesh's own sample rules (nginxinc/nginmesh istio/release/samples/, v0.7.1 tree) ----------------

NGINMESH_SAMPLES = {
    "route-rule-http-redirect": {"destination": {"name": "productpage"}, "precedence": 2,
                                 "match": {"request": {"headers": {"uri": {"exact": "/productpage"}}}},
                                 "redirect": {"uri": "/ratings"}},
    "route-rule-http-retry": {"destination": {"name": "reviews"}, "precedence": 1,
                              "route": [{"labels": {"version": "v3"}, "weight": 100}],
                              "httpReqRetries": {"simpleRetry": {"attempts": 3, "perTryTimeout": "10s"}}},
    "route-rule-http-abort": {"destination": {"name": "reviews"}, "precedence": 1,
                              "route": [{"labels": {"version": "v3"}, "weight": 100}],
                              "httpFault": {"abort": {"percent": 90, "httpStatus": 400}}},
    "route-rule-match-source": {"destination": {"name": "ratings"},
                                "match": {"source": {"name": "reviews", "labels": {"version": "v2"}},
                                          "request": {"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?"},
                                                                  "uri": {"prefix": "/ratings/v2/"}}}}},
}


@pytest.mark.parametrize("name", sorted(NGINMESH_SAMPLES))
def test_nginmesh_own_sample_rules_are_accepted(name: str) -> None:
    assert parse_route_rule(rule_object(NGINMESH_SAMPLES[name], name=name)).name == name
