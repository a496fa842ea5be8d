"""Workloads beyond independent prompts: multi-turn sessions and timed trace replay with the
recorded prefix structure (issue 12), and the prefix reuse a workload should give an engine.

Entry points: :func:`build_workload` (None for plain datasets), :func:`expected_reuse`, and
:mod:`sonic.workloads.convert` for the hand-off to the client.
"""

from sonic.workloads.build import WORKLOAD_DATASETS, build_workload, is_workload
from sonic.workloads.reuse import BlockReuse, ExpectedReuse, expected_reuse
from sonic.workloads.types import (
    REQUESTS,
    SESSIONS,
    Workload,
    WorkloadRequest,
    WorkloadSession,
    WorkloadTurn,
)

__all__ = [
    "REQUESTS",
    "SESSIONS",
    "WORKLOAD_DATASETS",
    "BlockReuse",
    "ExpectedReuse",
    "Workload",
    "WorkloadRequest",
    "WorkloadSession",
    "WorkloadTurn",
    "build_workload",
    "expected_reuse",
    "is_workload",
]
