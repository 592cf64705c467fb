"""Metrics plumbing: bucketed histograms, scrape-time collectors, per-server registries."""

from __future__ import annotations

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from tessera.http import HttpError, Request
from tessera.metrics import (
    CounterMetricFamily,
    Histogram,
    Metric,
    by_command,
    metrics_response,
    new_registry,
)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            assert isinstance(sample, Sample)
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_histogram_counts_each_sample_in_the_first_bucket_it_fits() -> None:
    histogram = Histogram((0.001, 0.01, 0.1))
    for value in (0.0005, 0.001, 0.002, 0.01, 0.05, 3.0):
        histogram.observe(value)
    # le semantics: a value equal to a bound belongs to that bound's bucket
    assert histogram.counts == [2, 2, 1, 1]
    assert histogram.cumulative() == [("0.001", 2), ("0.01", 4), ("0.1", 5), ("+Inf", 6)]
    assert histogram.count == 6
    assert histogram.total == pytest.approx(3.0635)


def test_empty_histogram_has_zero_buckets() -> None:
    histogram = Histogram((1.0, 2.0))
    assert histogram.cumulative() == [("1.0", 0), ("2.0", 0), ("+Inf", 0)]
    assert histogram.count == 0


def test_histogram_family_survives_the_text_format() -> None:
    histogram = Histogram((0.1, 1.0))
    histogram.observe(0.05)
    histogram.observe(0.5)
    histogram.observe(5.0)
    registry = new_registry(lambda: [histogram.family("x_seconds", "doc.", {"kind": "a"})])
    found = samples(generate_latest(registry).decode())
    assert found[("x_seconds_bucket", (("kind", "a"), ("le", "0.1")))] == 1
    assert found[("x_seconds_bucket", (("kind", "a"), ("le", "1.0")))] == 2
    assert found[("x_seconds_bucket", (("kind", "a"), ("le", "+Inf")))] == 3
    assert found[("x_seconds_count", (("kind", "a"),))] == 3
    assert found[("x_seconds_sum", (("kind", "a"),))] == pytest.approx(5.55)


def test_by_command_merges_spellings_per_lowercase_name() -> None:
    assert by_command({b"SET": 3, b"set": 4, b"GET": 1}) == {"set": 7, "get": 1}
    assert by_command({}) == {}


def test_collectors_read_the_live_counters_at_scrape_time() -> None:
    calls: dict[bytes, int] = {}

    def produce() -> list[Metric]:
        family = CounterMetricFamily("t_commands_total", "doc.", labels=["command"])
        for name, count in by_command(calls).items():
            family.add_metric([name], count)
        return [family]

    registry = new_registry(produce)
    assert ("t_commands_total", (("command", "set"),)) not in samples(
        generate_latest(registry).decode()
    )
    calls[b"SET"] = 10
    calls[b"set"] = 2
    found = samples(generate_latest(registry).decode())
    assert found[("t_commands_total", (("command", "set"),))] == 12
    assert ("process_open_fds", ()) in found  # the process collector comes with it


def test_two_servers_in_one_process_keep_their_own_registries() -> None:
    first = new_registry(lambda: [CounterMetricFamily("same_total", "doc.", 1)])
    second = new_registry(lambda: [CounterMetricFamily("same_total", "doc.", 2)])
    assert samples(generate_latest(first).decode())[("same_total", ())] == 1
    assert samples(generate_latest(second).decode())[("same_total", ())] == 2


def test_metrics_response_answers_only_get_metrics() -> None:
    registry = new_registry(lambda: [CounterMetricFamily("a_total", "doc.", 5)])
    response = metrics_response(registry, Request("GET", "/metrics", {}, None))
    assert response.status == 200
    assert response.content_type.startswith("text/plain")
    assert b"a_total 5.0" in response.body
    with pytest.raises(HttpError) as missing:
        metrics_response(registry, Request("GET", "/other", {}, None))
    assert missing.value.status == 404
    with pytest.raises(HttpError) as wrong:
        metrics_response(registry, Request("POST", "/metrics", {}, None))
    assert wrong.value.status == 405
