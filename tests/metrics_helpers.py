"""Reading a node's ``/metrics`` exposition the way Prometheus does, not by substring."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.parser import text_string_to_metric_families


def sample_value(text: str, name: str, labels: Mapping[str, str] | None = None) -> float:
    """The value of the one sample called ``name`` with exactly ``labels``."""
    wanted = dict(labels or {})
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == wanted:
                return float(sample.value)
    raise AssertionError(f"no sample {name}{wanted or ''} in the exposition")
