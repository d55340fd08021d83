"""The one error the HPA raises while computing: a metric that cannot produce a proposal."""

from __future__ import annotations


class MetricError(Exception):
    """A metric is invalid this sync: its source failed, or the calculator could not use it.

    The controller treats the metric as invalid (spec §3 step 6); the message follows the
    Kubernetes error strings of spec §4.10, of which only the substrings are contractual.
    """
