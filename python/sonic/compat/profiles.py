"""Compat profiles: everything on which vLLM `bench serve` and MAX benchmark_serving.py disagree.

A profile is chosen once per run (``--compat``, else from ``--backend``) and every layer reads
its policy from here instead of testing ``compat == "max"`` itself, so one table shows what
differs (compat.md Part 4) and a run can record exactly which conventions produced its numbers.

``vllm`` is vLLM's ``bench serve`` (2025+). ``max`` is MAX's G1 benchmark_serving.py (the one the
original sonic suite vendors) with the G2 additions it kept compatible: ``--max-concurrency``,
``--burstiness``, ``--temperature``, p90/p95 and ``failures``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sonic.errors import SonicError

# Profiles that users of the other generations may ask for but that we do not implement yet;
# refused by name rather than silently mapped to a near neighbour with different semantics.
UNIMPLEMENTED_PROFILES = {
    "vllm-legacy": "the pre-2025 benchmarks/benchmark_serving.py (temperature 0, "
    '"request_goodput:" key, sequential arrivals)',
    "max-g3": "MAX's 2026 `max benchmark` (chat endpoint, seed 24301, sweeps with per-level "
    "reseeding, steady-state detection)",
}


@dataclass(frozen=True)
class BodyPolicy:
    """How a profile fills request bodies, per API kind (see ``backends.API_KINDS``).

    ``fixed_fields`` are sent with every request of that API kind; the sampling flags override
    them and ``--extra-body`` overrides everything (last writer wins).
    """

    max_tokens_field: Mapping[str, str] = field(hash=False)
    include_usage: bool
    fixed_fields: Mapping[str, Mapping[str, Any]] = field(hash=False)

    def fixed(self, api: str) -> dict[str, Any]:
        """A private deep copy of the fixed fields for ``api`` (callers may mutate it)."""
        return copy.deepcopy(dict(self.fixed_fields.get(api, {})))


@dataclass(frozen=True, repr=False)
class CompatProfile:
    """The conventions of one benchmark tool. Field values are names other layers dispatch on."""

    name: str
    title: str
    # Flag defaults that differ between tools, keyed by argparse dest; flags absent here have
    # the same default in both (see flags.py).
    defaults: Mapping[str, Any] = field(hash=False)
    # --random-range-ratio: "symmetric" = U[L(1-r), L(1+r)] (vLLM); "lower_bound" =
    # U[int(L*r), L] (MAX G1, where 1.0 means fixed length).
    range_ratio_semantics: str
    # "server_default": send temperature only when --temperature is given (vLLM);
    # "zero": send 0.0 unless --temperature is given (MAX G1/G2).
    temperature_policy: str
    # "flag_or_random": --ignore-eos, forced on for the random dataset (vLLM);
    # "completions": always on for the completions API, off for chat unless --ignore-eos (MAX G1).
    ignore_eos_policy: str
    body: BodyPolicy
    # Names shared with sonic.metrics.rules.MetricRules.
    ttft_rule: str
    end_rule: str
    itl_rule: str
    token_count: str
    # Where a request's input-token count comes from: "usage" (server, vLLM) or "client".
    input_token_count: str
    # Exit/save policy on failed requests: vLLM saves and exits 0; MAX exits 1 without saving
    # unless --always-save-result.
    save_on_failure: bool
    failure_exit_code: int
    json_dialect: str
    filename_template: str
    date_format: str
    console_banner: str
    # "precomputed": all arrival times drawn up front and rescaled so the last lands at N/rate
    # (vLLM); "sequential": sleep after each send, first request immediate (MAX).
    arrival: str
    # Whether one test request is sent before timing by default. vLLM sends it only when
    # --ready-check-timeout-sec > 0.
    test_prompt_default: bool
    model_required: bool
    # sharegpt without --dataset-path: MAX downloads it from the Hub, vLLM requires the path.
    sharegpt_auto_download: bool
    # sonnet prompts: "unless_chat" = chat-templated except for the chat API (vLLM);
    # "always" = chat-templated for every API (MAX G1).
    sonnet_chat_template: str

    def __repr__(self) -> str:
        return f"CompatProfile({self.name!r})"

    def default(self, dest: str) -> Any:
        """This profile's default for a flag dest (None when the flag has no profile default)."""
        return copy.deepcopy(self.defaults.get(dest))

    def describe(self) -> dict[str, Any]:
        """The conventions as a JSON-able dict, for recording in results."""
        return {
            "compat": self.name,
            "range_ratio_semantics": self.range_ratio_semantics,
            "temperature_policy": self.temperature_policy,
            "ignore_eos_policy": self.ignore_eos_policy,
            "include_usage": self.body.include_usage,
            "ttft_rule": self.ttft_rule,
            "end_rule": self.end_rule,
            "itl_rule": self.itl_rule,
            "token_count": self.token_count,
            "input_token_count": self.input_token_count,
            "arrival": self.arrival,
            "json_dialect": self.json_dialect,
        }


VLLM = CompatProfile(
    name="vllm",
    title="vLLM `bench serve`",
    defaults={
        "backend": "openai",
        "host": "127.0.0.1",
        "dataset_name": "random",
        "seed": 0,
        "num_prompts": 1000,
        "percentile_metrics": ("ttft", "tpot", "itl"),
        "metric_percentiles": (99.0,),
        "random_range_ratio": 0.0,
        "temperature": None,
        "collect_gpu_stats": False,
        "collect_cpu_stats": False,
        "flush_prefix_cache": False,
    },
    range_ratio_semantics="symmetric",
    temperature_policy="server_default",
    ignore_eos_policy="flag_or_random",
    body=BodyPolicy(
        max_tokens_field={
            "completions": "max_tokens",
            "chat": "max_completion_tokens",
            "tgi": "parameters.max_new_tokens",
            "trtllm": "max_tokens",
        },
        include_usage=True,
        fixed_fields={
            "completions": {"repetition_penalty": 1.0},
            # TGI rejects temperature 0 and top_p 1, hence vLLM's near-greedy values.
            "tgi": {"parameters": {"do_sample": True, "temperature": 0.01, "top_p": 0.99}},
            "trtllm": {"accumulate_tokens": True, "temperature": 0.0, "top_p": 1.0},
        },
    ),
    ttft_rule="first_choice",
    end_rule="last_choice",
    itl_rule="choice",
    token_count="usage",
    input_token_count="usage",
    save_on_failure=True,
    failure_exit_code=0,
    json_dialect="vllm",
    filename_template="vllm",
    date_format="%Y%m%d-%H%M%S",
    console_banner="vllm",
    arrival="precomputed",
    test_prompt_default=False,
    model_required=False,
    sharegpt_auto_download=False,
    sonnet_chat_template="unless_chat",
)

MAX = CompatProfile(
    name="max",
    title="MAX benchmark_serving.py (G1 + G2 additions)",
    defaults={
        "backend": "modular",
        "host": "localhost",
        "dataset_name": "sharegpt",
        "seed": 0,
        "num_prompts": 1000,
        "percentile_metrics": ("ttft", "tpot", "itl", "e2el"),
        "metric_percentiles": (90.0, 95.0, 99.0),
        "random_range_ratio": 1.0,
        "temperature": 0.0,
        "collect_gpu_stats": True,  # as MAX G3 (off in G1/G2 and vLLM)
        "collect_cpu_stats": True,  # as MAX G2.5 and G3
        "flush_prefix_cache": True,  # as MAX G3
    },
    range_ratio_semantics="lower_bound",
    temperature_policy="zero",
    ignore_eos_policy="completions",
    body=BodyPolicy(
        max_tokens_field={
            "completions": "max_tokens",
            "chat": "max_tokens",
            "tgi": "parameters.max_new_tokens",
            "trtllm": "max_tokens",
        },
        include_usage=False,
        fixed_fields={
            "completions": {"temperature": 0.0, "best_of": 1, "ignore_eos": True},
            "chat": {"temperature": 0.0},
            "tgi": {"parameters": {"do_sample": True, "temperature": 0.01, "top_p": 0.99}},
            "trtllm": {"accumulate_tokens": True, "temperature": 0.0, "top_p": 1.0},
        },
    ),
    ttft_rule="first_text",
    end_rule="last_event",
    itl_rule="text",
    token_count="retokenize",
    input_token_count="client",
    save_on_failure=False,
    failure_exit_code=1,
    json_dialect="max",
    filename_template="max",
    date_format="%Y-%m-%d %H:%M:%S",
    console_banner="max",
    arrival="sequential",
    test_prompt_default=True,
    model_required=True,
    sharegpt_auto_download=True,
    sonnet_chat_template="always",
)

PROFILES: dict[str, CompatProfile] = {p.name: p for p in (VLLM, MAX)}

# Backends whose users run MAX's script; any other backend (or none) means vLLM's conventions.
MAX_BACKENDS = frozenset({"modular", "modular-chat"})


def get_profile(name: str) -> CompatProfile:
    """The profile called ``name``; a clear SonicError for other generations or typos."""
    key = name.strip().lower()
    if key in PROFILES:
        return PROFILES[key]
    if key in UNIMPLEMENTED_PROFILES:
        raise SonicError(
            f"--compat {key} is not implemented ({UNIMPLEMENTED_PROFILES[key]}); "
            "use --compat vllm or --compat max"
        )
    raise SonicError(f"unknown --compat {name!r}: expected vllm or max")


def select_profile(compat: str | None, backend: str | None) -> CompatProfile:
    """``--compat`` when given, else ``max`` for the modular backends, else ``vllm``."""
    if compat is not None:
        return get_profile(compat)
    if backend is not None and backend.strip().lower() in MAX_BACKENDS:
        return MAX
    return VLLM
