"""Build the workload a scenario's ``workload`` block describes."""

from __future__ import annotations

from tidal.config.scenario import (
    BurstyWorkload,
    ConstantWorkload,
    DiurnalWorkload,
    RampWorkload,
    SpikeWorkload,
    StepWorkload,
    TraceWorkload,
)
from tidal.workload.base import Workload
from tidal.workload.synthetic import build_synthetic
from tidal.workload.traces import build_trace

AnyWorkloadSpec = (
    ConstantWorkload | StepWorkload | RampWorkload | DiurnalWorkload | SpikeWorkload | BurstyWorkload | TraceWorkload
)


def build_workload(spec: AnyWorkloadSpec, seed: int) -> Workload:
    """The workload for ``spec``, its random state seeded by ``seed``.

    The same seed and the same sequence of ``arrivals`` windows give identical arrivals. Trace
    files are parsed once per process and shared; a bad file raises
    :class:`~tidal.core.errors.TidalInputError` naming ``file:line``.
    """
    if isinstance(spec, TraceWorkload):
        return build_trace(spec, seed)
    return build_synthetic(spec, seed)
