"""Benchmark datasets: seeded, profile-faithful prompt samplers (one module per dataset).

``sample_requests(DatasetArgs(...), tokenizer)`` returns the run's prompts. The per-dataset rules
for the vLLM and MAX profiles are described in each module. Importing this package is cheap:
numpy, tokenizers and friends load only when a sampler runs.
"""

from __future__ import annotations

from sonic.datasets.base import DatasetArgs, SampleRequest
from sonic.datasets.registry import DATASET_NAMES, NOT_IMPLEMENTED, fingerprint, sample_requests

__all__ = [
    "DATASET_NAMES",
    "NOT_IMPLEMENTED",
    "DatasetArgs",
    "SampleRequest",
    "fingerprint",
    "sample_requests",
]
