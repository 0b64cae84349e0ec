"""Request metrics (pytest_nginmesh.checks.metrics) against recorded-style Mixer scrapes in tests/data/metrics.

The files hold Bookinfo traffic with known growth between ``before`` and ``after`` (see the README there):
productpage +20, reviews v1/v2/v3 +7/+7/+6, ratings +7 and +1 with code 200 and a new 503 label set (+5),
details reset (45 -> 20), and one unchanged label set (productpage 404).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from pytest_nginmesh.checks.findings import ids
from pytest_nginmesh.checks.metrics import (
    ISTIO_0_2,
    ISTIO_0_3,
    MetricNames,
    MetricsParseError,
    SampleKey,
    Scrape,
    check_buckets,
    check_histogram,
    check_request_counts,
    delta,
    parse_scrape,
    split_by,
    total,
)
from pytest_nginmesh.errors import ManifestError

DATA = Path(__file__).resolve().parents[1] / "data" / "metrics"
BEFORE = "istio-0.3-before.txt"
AFTER = "istio-0.3-after.txt"
AFTER_TOTAL = "istio-0.3-after-total-suffix.txt"
AFTER_0_2 = "istio-0.2-after.txt"
ALL_FILES = (BEFORE, AFTER, AFTER_TOTAL, AFTER_0_2)

INGRESS = "istio-ingress.istio-system.svc.cluster.local"
PRODUCTPAGE = "productpage.default.svc.cluster.local"
DETAILS = "details.default.svc.cluster.local"
REVIEWS = "reviews.default.svc.cluster.local"
RATINGS = "ratings.default.svc.cluster.local"
COUNT = "istio_request_count"
DURATION_BOUNDS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
SIZE_BOUNDS = ("1", "10", "100", "1000", "10000", "100000", "1e+06", "1e+07", "+Inf")


def labels(source: str, source_version: str, destination: str, destination_version: str,
           code: str) -> frozenset[tuple[str, str]]:
    return frozenset({("source_service", source), ("source_version", source_version),
                      ("destination_service", destination), ("destination_version", destination_version),
                      ("response_code", code)})


PRODUCTPAGE_200 = labels(INGRESS, "unknown", PRODUCTPAGE, "v1", "200")
PRODUCTPAGE_404 = labels(INGRESS, "unknown", PRODUCTPAGE, "v1", "404")
DETAILS_200 = labels(PRODUCTPAGE, "v1", DETAILS, "v1", "200")
REVIEWS_V1 = labels(PRODUCTPAGE, "v1", REVIEWS, "v1", "200")
REVIEWS_V2 = labels(PRODUCTPAGE, "v1", REVIEWS, "v2", "200")
REVIEWS_V3 = labels(PRODUCTPAGE, "v1", REVIEWS, "v3", "200")
RATINGS_FROM_V2 = labels(REVIEWS, "v2", RATINGS, "v1", "200")
RATINGS_FROM_V3 = labels(REVIEWS, "v3", RATINGS, "v1", "200")
RATINGS_503 = labels(REVIEWS, "v3", RATINGS, "unknown", "503")

BEFORE_COUNTS = {PRODUCTPAGE_200: 10, PRODUCTPAGE_404: 1, DETAILS_200: 45, REVIEWS_V1: 4, REVIEWS_V2: 5,
                 REVIEWS_V3: 3, RATINGS_FROM_V2: 5, RATINGS_FROM_V3: 3}
AFTER_COUNTS = {PRODUCTPAGE_200: 30, PRODUCTPAGE_404: 1, DETAILS_200: 20, REVIEWS_V1: 11, REVIEWS_V2: 12,
                REVIEWS_V3: 9, RATINGS_FROM_V2: 12, RATINGS_FROM_V3: 4, RATINGS_503: 5}
GROWTH = {PRODUCTPAGE_200: 20, DETAILS_200: 20, REVIEWS_V1: 7, REVIEWS_V2: 7, REVIEWS_V3: 6,
          RATINGS_FROM_V2: 7, RATINGS_FROM_V3: 1, RATINGS_503: 5}


def read(name: str) -> Scrape:
    return parse_scrape((DATA / name).read_text())


def key(name: str, label_set: frozenset[tuple[str, str]], **extra: str) -> SampleKey:
    return SampleKey(name, label_set | frozenset(extra.items()))


def named(scrape: Scrape, name: str) -> dict[frozenset[tuple[str, str]], float]:
    return {k.labels: v for k, v in scrape.items() if k.name == name}


@pytest.fixture(scope="module")
def changes() -> Scrape:
    return delta(read(BEFORE), read(AFTER))


# ---------------------------------------------------------------------------------------------------- parse_scrape


@pytest.mark.parametrize(("name", "expected"), [(BEFORE, BEFORE_COUNTS), (AFTER, AFTER_COUNTS),
                                                (AFTER_TOTAL, AFTER_COUNTS)])
def test_counter_samples_are_keyed_by_the_family_name(name: str,
                                                      expected: dict[frozenset[tuple[str, str]], int]) -> None:
    scrape = read(name)
    assert named(scrape, COUNT) == expected
    assert named(scrape, COUNT + "_total") == {}


def test_istio_0_2_counter_is_keyed_by_its_own_name() -> None:
    scrape = read(AFTER_0_2)
    assert named(scrape, "request_count") == AFTER_COUNTS
    assert not any(k.name.startswith("istio_") for k in scrape)


def test_total_suffix_file_reads_as_the_plain_one_plus_created_samples() -> None:
    plain, suffixed = read(AFTER), read(AFTER_TOTAL)
    created = {k: v for k, v in suffixed.items() if k.name == COUNT + "_created"}
    assert len(created) == len(AFTER_COUNTS)
    assert {k: v for k, v in suffixed.items() if k not in created} == plain


def test_labels_are_exactly_those_in_the_text() -> None:
    scrape = read(AFTER)
    sample = next(k for k in scrape if k.name == COUNT and ("response_code", "503") in k.labels)
    assert dict(sample.labels) == {"source_service": REVIEWS, "source_version": "v3", "destination_service": RATINGS,
                                   "destination_version": "unknown", "response_code": "503"}
    assert scrape[sample] == 5.0
    assert isinstance(scrape[sample], float)


@pytest.mark.parametrize("name", ALL_FILES)
def test_histograms_keep_buckets_sum_and_count(name: str) -> None:
    scrape = read(name)
    prefix = "" if name == AFTER_0_2 else "istio_"
    counts = named(scrape, prefix + "request_count")
    for metric, bounds in (("request_duration", DURATION_BOUNDS), ("request_size", SIZE_BOUNDS),
                           ("response_size", SIZE_BOUNDS)):
        family = prefix + metric
        assert set(named(scrape, family + "_count")) == set(counts), family
        assert set(named(scrape, family + "_sum")) == set(counts), family
        for label_set, requests in counts.items():
            buckets = [scrape[key(family + "_bucket", label_set, le=bound)] for bound in bounds]
            assert buckets == sorted(buckets), f"{family} buckets not cumulative for {sorted(label_set)}"
            assert buckets[-1] == scrape[key(family + "_count", label_set)] == requests
        bucket_keys = [k for k in scrape if k.name == family + "_bucket"]
        assert len(bucket_keys) == len(bounds) * len(counts)


def test_histogram_values_read_exactly() -> None:
    scrape = read(AFTER)
    assert scrape[key("istio_request_duration_bucket", PRODUCTPAGE_200, le="0.025")] == 1.0
    assert scrape[key("istio_request_duration_bucket", PRODUCTPAGE_200, le="0.1")] == 9.0
    assert scrape[key("istio_request_duration_bucket", PRODUCTPAGE_200, le="+Inf")] == 30.0
    assert scrape[key("istio_request_duration_sum", PRODUCTPAGE_200)] == pytest.approx(5.259)
    assert scrape[key("istio_response_size_sum", DETAILS_200)] == 3560.0
    assert scrape[key("istio_response_size_bucket", DETAILS_200, le="100")] == 0.0
    assert scrape[key("istio_response_size_bucket", DETAILS_200, le="1e+06")] == 20.0


@pytest.mark.parametrize("text", [
    "hello",
    "<html><body><h1>404 Not Found</h1></body></html>",
    '{"istio_request_count": 3}',
    'istio_request_count{response_code=200} 3',
    'istio_request_count{response_code="200"}',
    'istio_request_count{response_code="200"} three',
    'istio_request_count{response_code="200" 3',
])
def test_garbage_raises_metrics_parse_error(text: str) -> None:
    with pytest.raises(MetricsParseError, match="not Prometheus exposition text"):
        parse_scrape(text)


def test_parse_error_is_a_manifest_error() -> None:
    assert issubclass(MetricsParseError, ManifestError)


def test_empty_and_comment_only_texts_have_no_samples() -> None:
    assert parse_scrape("") == {}
    assert parse_scrape("# HELP istio_request_count Requests.\n# TYPE istio_request_count counter\n") == {}


def test_untyped_samples_keep_their_written_name() -> None:
    assert parse_scrape('foo_total{a="b"} 2\nbar 1\n') == {
        SampleKey("foo_total", frozenset({("a", "b")})): 2.0, SampleKey("bar", frozenset()): 1.0}


# ----------------------------------------------------------------------------------------------------------- delta


def test_delta_of_the_request_counter(changes: Scrape) -> None:
    assert named(changes, COUNT) == GROWTH


def test_delta_omits_unchanged_samples(changes: Scrape) -> None:
    assert not any(k.labels >= PRODUCTPAGE_404 for k in changes)


def test_delta_counts_a_reset_from_zero(changes: Scrape) -> None:
    after = read(AFTER)
    for name in ("istio_request_count", "istio_request_duration_count", "istio_request_duration_sum",
                 "istio_response_size_sum"):
        assert changes[key(name, DETAILS_200)] == after[key(name, DETAILS_200)], name
    assert changes[key(COUNT, DETAILS_200)] == 20.0


def test_delta_counts_a_new_label_set_from_zero(changes: Scrape) -> None:
    after = read(AFTER)
    new = {k: v for k, v in after.items() if k.labels >= RATINGS_503 and v}
    assert new
    assert {k: v for k, v in changes.items() if k.labels >= RATINGS_503} == new


def test_delta_of_histograms(changes: Scrape) -> None:
    assert changes[key("istio_request_duration_count", PRODUCTPAGE_200)] == 20.0
    assert changes[key("istio_request_duration_bucket", PRODUCTPAGE_200, le="+Inf")] == 20.0
    assert changes[key("istio_request_duration_sum", PRODUCTPAGE_200)] == pytest.approx(5.259 - 1.528)
    for label_set, grown in GROWTH.items():
        assert changes[key("istio_response_size_count", label_set)] == grown
    # GET bodies are empty: the request size histograms count requests but their sums stay 0.
    assert not any(k.name == "istio_request_size_sum" for k in changes)


def test_delta_synthetic_cases() -> None:
    a, b, c, d, e, f = (SampleKey("m", frozenset({("x", x)})) for x in "abcdef")
    before: Scrape = {a: 5.0, b: 5.0, c: 10.0, d: 3.0, f: 7.0}
    after: Scrape = {a: 8.0, b: 5.0, c: 4.0, d: 0.0, e: 2.0}
    assert delta(before, after) == {a: 3.0, c: 4.0, e: 2.0}


def test_delta_of_a_scrape_with_itself_is_empty() -> None:
    assert delta(read(AFTER), read(AFTER)) == {}


def test_delta_from_nothing_is_every_nonzero_sample() -> None:
    after = read(AFTER)
    assert delta({}, after) == {k: v for k, v in after.items() if v}


# ----------------------------------------------------------------------------------------------- total, split_by


def test_total_with_label_subsets(changes: Scrape) -> None:
    assert total(changes, COUNT) == sum(GROWTH.values()) == 73
    assert total(changes, COUNT, destination_service=PRODUCTPAGE) == 20
    assert total(changes, COUNT, destination_service=PRODUCTPAGE, response_code="200") == 20
    assert total(changes, COUNT, destination_service=PRODUCTPAGE, response_code="404") == 0
    assert total(changes, COUNT, destination_service=REVIEWS) == 20
    assert total(changes, COUNT, destination_service=REVIEWS, destination_version="v3") == 6
    assert total(changes, COUNT, destination_service=RATINGS) == 13
    assert total(changes, COUNT, destination_service=RATINGS, response_code="503") == 5
    assert total(changes, COUNT, source_service=REVIEWS, source_version="v3") == 6
    assert total(changes, COUNT, destination_service=DETAILS) == 20


def test_total_of_nothing_is_zero(changes: Scrape) -> None:
    assert total(changes, "request_count") == 0
    assert total(changes, COUNT, destination_service="nosuch.default.svc.cluster.local") == 0
    assert total(changes, COUNT, no_such_label="x") == 0
    assert total({}, COUNT) == 0


def test_total_looks_at_one_name_only(changes: Scrape) -> None:
    assert total(changes, "istio_request_duration_count", destination_service=REVIEWS) == 20
    assert total(changes, "istio_request_duration_bucket", destination_service=REVIEWS, le="+Inf") == 20


def test_split_by(changes: Scrape) -> None:
    assert split_by(changes, COUNT, "destination_version", destination_service=REVIEWS) == {
        "v1": 7, "v2": 7, "v3": 6}
    assert split_by(changes, COUNT, "response_code", destination_service=RATINGS) == {"200": 8, "503": 5}
    assert split_by(changes, COUNT, "destination_version", destination_service=RATINGS) == {"v1": 8, "unknown": 5}
    assert split_by(changes, COUNT, "destination_service") == {PRODUCTPAGE: 20, DETAILS: 20, REVIEWS: 20, RATINGS: 13}
    assert split_by(changes, COUNT, "response_code", destination_service="nosuch") == {}


def test_split_by_a_missing_label_groups_under_empty_string() -> None:
    scrape: Scrape = {SampleKey("m", frozenset({("v", "1")})): 2.0, SampleKey("m", frozenset()): 3.0,
                      SampleKey("other", frozenset()): 9.0}
    assert split_by(scrape, "m", "v") == {"1": 2.0, "": 3.0}


# ---------------------------------------------------------------------------------------- check_request_counts


def test_request_counts_exact_have_no_findings(changes: Scrape) -> None:
    assert check_request_counts(changes, ISTIO_0_3, GROWTH) == []
    by_destination = {frozenset({("destination_service", REVIEWS)}): 20,
                      frozenset({("destination_service", RATINGS), ("response_code", "503")}): 5,
                      frozenset({("destination_service", PRODUCTPAGE), ("response_code", "404")}): 0}
    assert check_request_counts(changes, ISTIO_0_3, by_destination) == []


def test_request_count_mismatch_is_a_finding(changes: Scrape) -> None:
    expected = {REVIEWS_V1: 7, REVIEWS_V3: 7, frozenset({("destination_service", RATINGS)}): 12}
    findings = check_request_counts(changes, ISTIO_0_3, expected, subject="bookinfo")
    assert ids(findings) == {"metrics.request-count"}
    assert len(findings) == 2
    by_expected = {f.evidence["expected"]: f for f in findings}
    assert by_expected[7].evidence["grown"] == 6
    assert by_expected[12].evidence["grown"] == 13
    for finding in findings:
        assert finding.subject == "bookinfo"
        assert finding.message.startswith(COUNT + "{")
        seen = finding.evidence["all_changes"]
        assert len(seen) == len(GROWTH)
        assert sorted(seen.values()) == sorted(GROWTH.values())
    assert "grew by 6, not 7" in by_expected[7].message
    assert f"destination_service='{RATINGS}'" in by_expected[12].message


def test_request_count_absent_metric_is_a_finding() -> None:
    changes = delta({}, read(AFTER_0_2))  # Istio 0.2 names; looked for under Istio 0.3 names
    findings = check_request_counts(changes, ISTIO_0_3, {frozenset({("destination_service", REVIEWS)}): 32})
    assert [f.id for f in findings] == ["metrics.request-count"]
    assert findings[0].subject == "metrics"
    assert findings[0].evidence["expected"] == 32
    assert findings[0].evidence["grown"] == 0
    assert findings[0].evidence["all_changes"] == {}


def test_request_counts_under_istio_0_2_names() -> None:
    changes = delta({}, read(AFTER_0_2))
    assert check_request_counts(changes, ISTIO_0_2, AFTER_COUNTS) == []


def test_request_count_expected_zero_but_grew_is_a_finding(changes: Scrape) -> None:
    findings = check_request_counts(changes, ISTIO_0_3, {RATINGS_503: 0})
    assert [(f.id, f.evidence["expected"], f.evidence["grown"]) for f in findings] == [
        ("metrics.request-count", 0, 5)]


# ------------------------------------------------------------------------------------------------ check_histogram


def test_histogram_that_grew_as_expected_has_no_findings(changes: Scrape) -> None:
    assert check_histogram(changes, "istio_request_duration", 20, destination_service=PRODUCTPAGE) == []
    assert check_histogram(changes, "istio_response_size", 20, destination_service=REVIEWS) == []
    assert check_histogram(changes, "istio_request_duration", 5, destination_service=RATINGS,
                           response_code="503") == []


def test_histogram_count_mismatch(changes: Scrape) -> None:
    findings = check_histogram(changes, "istio_request_duration", 21, subject="productpage",
                               destination_service=PRODUCTPAGE)
    assert [f.id for f in findings] == ["metrics.histogram-count"]
    assert findings[0].subject == "productpage"
    assert findings[0].evidence == {"labels": {"destination_service": PRODUCTPAGE}, "grown": 20, "expected": 21}


def test_histogram_sum_not_grown(changes: Scrape) -> None:
    findings = check_histogram(changes, "istio_request_size", 20, destination_service=PRODUCTPAGE)
    assert [f.id for f in findings] == ["metrics.histogram-sum"]
    assert findings[0].evidence == {"labels": {"destination_service": PRODUCTPAGE}}


def test_histogram_absent_has_both_findings(changes: Scrape) -> None:
    findings = check_histogram(changes, "request_duration", 20, destination_service=PRODUCTPAGE)
    assert [f.id for f in findings] == ["metrics.histogram-count", "metrics.histogram-sum"]


def test_histogram_unchanged_label_set(changes: Scrape) -> None:
    findings = check_histogram(changes, "istio_request_duration", 0, destination_service=PRODUCTPAGE,
                               response_code="404")
    assert [f.id for f in findings] == ["metrics.histogram-sum"]


# ----------------------------------------------------------------------------------------------------- the names


def test_istio_metric_names() -> None:
    assert (ISTIO_0_2.request_count, ISTIO_0_2.request_duration, ISTIO_0_2.request_size, ISTIO_0_2.response_size) \
        == ("request_count", "request_duration", "request_size", "response_size")
    assert (ISTIO_0_3.request_count, ISTIO_0_3.request_duration, ISTIO_0_3.request_size, ISTIO_0_3.response_size) \
        == ("istio_request_count", "istio_request_duration", "istio_request_size", "istio_response_size")


@pytest.mark.parametrize("names", [ISTIO_0_2, ISTIO_0_3])
def test_scrape_place(names: MetricNames) -> None:
    assert (names.namespace, names.service, names.port, names.path) == ("istio-system", "istio-mixer", 42422,
                                                                       "/metrics")


def test_metric_names_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ISTIO_0_3.request_count = "x"  # type: ignore[misc]


@pytest.mark.parametrize(("names", "name"), [(ISTIO_0_2, AFTER_0_2), (ISTIO_0_3, AFTER), (ISTIO_0_3, AFTER_TOTAL)])
def test_names_match_the_recorded_scrapes(names: MetricNames, name: str) -> None:
    present = {k.name for k in read(name)}
    assert names.request_count in present
    for histogram in (names.request_duration, names.request_size, names.response_size):
        assert {histogram + "_bucket", histogram + "_sum", histogram + "_count"} <= present


# -- Istio 0.2.12's histogram buckets and defaults -------------------------------------------------------

def size_histogram(name: str, bounds: tuple[str, ...]) -> str:
    label = 'destination_service="ratings.default.svc.cluster.local",response_code="200"'
    lines = [f"# TYPE {name} histogram"]
    lines += [f'{name}_bucket{{{label},le="{bound}"}} 1' for bound in (*bounds, "+Inf")]
    lines += [f"{name}_sum{{{label}}} 120", f"{name}_count{{{label}}} 1"]
    return "\n".join(lines) + "\n"


def test_istio_0_2_names_have_no_prefix_and_sizes_have_nine_buckets() -> None:
    assert (ISTIO_0_2.request_count, ISTIO_0_2.request_size) == ("request_count", "request_size")
    assert ISTIO_0_2.size_buckets == (1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8)
    assert ISTIO_0_2.duration_buckets[0] == 0.005 and ISTIO_0_2.duration_buckets[-1] == 10.0
    assert ISTIO_0_2.response_code_default == "200"


def test_buckets_as_mixer_writes_them_pass() -> None:
    scrape = parse_scrape(size_histogram("request_size", (*SIZE_BOUNDS[:-1], "1e+08")))
    assert check_buckets(scrape, "request_size", ISTIO_0_2.size_buckets) == []


def test_a_missing_bucket_is_a_finding() -> None:
    (finding,) = check_buckets(read(AFTER_0_2), "request_size", ISTIO_0_2.size_buckets)[:1]
    assert finding.id == "metrics.histogram-buckets" and "100000000.0" in finding.message
