"""Result files: documents in each dialect's format (written by ``sonic.dialects``), the raw
per-request log, atomic writes, secret scrubbing and the dialect's exit policy."""

from __future__ import annotations

from sonic.dialects.vllm import DETAILED_KEYS as VLLM_DETAILED_KEYS
from sonic.results.document import (
    SONIC_KEY,
    add_telemetry,
    build_max_result,
    build_result,
    build_vllm_result,
    request_rate_value,
    sonic_section,
)
from sonic.results.files import (
    raw_records_path,
    result_filename,
    result_path,
    save_result,
    write_atomic,
    write_raw_records,
)
from sonic.results.info import RunInfo, parse_metadata
from sonic.results.policy import Outcome, run_outcome, should_save
from sonic.results.secrets import collect_secrets, redact_args, scrub_text

__all__ = [
    "SONIC_KEY",
    "add_telemetry",
    "VLLM_DETAILED_KEYS",
    "Outcome",
    "RunInfo",
    "build_max_result",
    "build_result",
    "build_vllm_result",
    "collect_secrets",
    "parse_metadata",
    "raw_records_path",
    "redact_args",
    "request_rate_value",
    "result_filename",
    "result_path",
    "run_outcome",
    "save_result",
    "scrub_text",
    "should_save",
    "sonic_section",
    "write_atomic",
    "write_raw_records",
]
