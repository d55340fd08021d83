"""Analytic queueing models: Erlang B/C, M/M/1, M/M/c, M/D/1, M/G/1, G/G/c approximations, sizing.

Pure functions used to sanity-check the simulator, seed policies with capacity estimates and
explain results. Rates are per second, times in seconds; see :mod:`tidal.queueing.models`.
"""

from .erlang import erlang_b, erlang_c
from .models import (
    MMcMetrics,
    QueueMetrics,
    kingman_gg1,
    md1,
    mg1,
    mgc_allen_cunneen,
    mm1,
    mm1_response_tail,
    mmc,
    mmc_response_percentile,
    mmc_response_time_cdf,
    mmc_wait_percentile,
    mmc_wait_tail,
)
from .sizing import min_servers_for_mean_response, min_servers_for_wait

__all__ = [
    "MMcMetrics",
    "QueueMetrics",
    "erlang_b",
    "erlang_c",
    "kingman_gg1",
    "md1",
    "mg1",
    "mgc_allen_cunneen",
    "min_servers_for_mean_response",
    "min_servers_for_wait",
    "mm1",
    "mm1_response_tail",
    "mmc",
    "mmc_response_percentile",
    "mmc_response_time_cdf",
    "mmc_wait_percentile",
    "mmc_wait_tail",
]
