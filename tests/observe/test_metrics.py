"""Request metrics are counted in plain integers and handed to prometheus-client at scrape time.

The scrape must read exactly as if every request had gone through prometheus-client's own
inc() and observe(): same names, labels, buckets, counts and sums.
"""
from __future__ import annotations

from gateway.observe.access_log import AccessRecord
from gateway.observe.metrics import UPSTREAM_BUCKETS, Metrics


def _record(route, method, decision, status, verification=None, upstream_ms=None) -> AccessRecord:
    return AccessRecord("id", method, "/p", route=route, decision=decision, status=status, latency_ms=1.0,
                        upstream_ms=upstream_ms, verification=verification)


RECORDS = [
    _record("/user", "GET", "allow", 200, "valid", 0.41),
    _record("/user", "GET", "allow", 200, "valid", 2.5),  # exactly on a bucket's bound: counted in it
    _record("/user", "GET", "allow", 502, "valid", 40_000.0),  # above every bound: +Inf only
    _record("/admin", "GET", "deny", 403, "valid"),
    _record("/admin", "POST", "deny", 401, "token_expired"),
    _record("/user", "BREW", "deny", 401, "authorization_header_missing"),  # a method nobody knows: OTHER
    _record(None, "GET", "deny", 404),  # no route: "-"
    _record("/", "HEAD", "allow", 200, None, 3.0),  # a public route: no verification
    _record("/user", "GET", "allow", 200, "valid", 0.41),
]


def _scrape(metrics: Metrics) -> list[str]:
    """The exposition lines, without the `_created` timestamps (when a child was first made)."""
    return [line for line in metrics.render().decode().splitlines() if "_created" not in line]


def _counted_by_prometheus_client(records: list[AccessRecord]) -> Metrics:
    """The reference: each request through prometheus-client's own inc() and observe()."""
    metrics = Metrics()
    for record in records:
        method = record.method if record.method in ("GET", "HEAD", "POST") else "OTHER"
        metrics.requests.labels(record.route or "-", method, record.decision, str(record.status)).inc()
        if record.upstream_ms is not None:
            metrics.upstream.labels(record.route or "-").observe(record.upstream_ms / 1000)
        if record.verification is not None:
            metrics.verifications.labels(record.verification).inc()
    return metrics


def test_the_scrape_reads_as_prometheus_client_counting_each_request():
    metrics = Metrics()
    for record in RECORDS:
        metrics.observe(record)
    scraped = _scrape(metrics)
    assert scraped == _scrape(_counted_by_prometheus_client(RECORDS))
    assert 'gateway_requests_total{decision="allow",method="GET",route="/user",status="200"} 3.0' in scraped
    assert 'gateway_requests_total{decision="deny",method="OTHER",route="/user",status="401"} 1.0' in scraped
    assert 'gateway_upstream_duration_seconds_bucket{le="0.001",route="/user"} 2.0' in scraped
    assert 'gateway_upstream_duration_seconds_bucket{le="0.0025",route="/user"} 3.0' in scraped
    assert 'gateway_upstream_duration_seconds_bucket{le="30.0",route="/user"} 3.0' in scraped
    assert 'gateway_upstream_duration_seconds_bucket{le="+Inf",route="/user"} 4.0' in scraped
    assert len(UPSTREAM_BUCKETS) == 14


def test_requests_between_scrapes_are_added_to_what_was_scraped():
    metrics = Metrics()
    for record in RECORDS[:4]:
        metrics.observe(record)
    first = _scrape(metrics)
    assert first == _scrape(_counted_by_prometheus_client(RECORDS[:4]))
    assert _scrape(metrics) == first  # a scrape with nothing new changes nothing
    for record in RECORDS[4:]:
        metrics.observe(record)
    assert _scrape(metrics) == _scrape(_counted_by_prometheus_client(RECORDS))


def test_a_collect_of_the_registry_itself_sees_every_request():
    """Embedders and tests read `metrics.registry` directly, not only through render()."""
    metrics = Metrics()
    metrics.observe(RECORDS[0])
    samples = [sample for family in metrics.registry.collect() if family.name == "gateway_requests"
               for sample in family.samples if sample.name == "gateway_requests_total"]
    assert [(sample.labels["route"], sample.value) for sample in samples] == [("/user", 1.0)]
