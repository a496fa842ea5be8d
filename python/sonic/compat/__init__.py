"""Command-line compatibility with vLLM `bench serve` and MAX benchmark_serving.py.

``parse_run_args(argv)`` turns ``sonic run`` flags into a resolved ``RunArgs``; ``profiles``
holds each tool's conventions, ``backends`` the endpoint routing, ``flags`` the table of every
flag of both tools and what sonic does with it.
"""

from __future__ import annotations

from sonic.compat.backends import resolve_route, route_endpoint
from sonic.compat.help import format_run_help
from sonic.compat.parser import parse_run_args
from sonic.compat.profiles import MAX, PROFILES, VLLM, CompatProfile, get_profile, select_profile
from sonic.compat.runargs import RunArgs

__all__ = [
    "MAX",
    "PROFILES",
    "VLLM",
    "CompatProfile",
    "RunArgs",
    "format_run_help",
    "get_profile",
    "parse_run_args",
    "resolve_route",
    "route_endpoint",
    "select_profile",
]
