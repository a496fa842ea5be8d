"""Command-line compatibility with vLLM `bench serve` and MAX's benchmarks.

``parse_run_args(argv)`` turns ``sonic run`` flags into a resolved ``RunArgs``; each tool's
conventions live in ``sonic.dialects``, ``backends`` holds the endpoint routing, ``flags`` the
table of every flag of the tools and what sonic does with it.
"""

from __future__ import annotations

from sonic.compat.backends import resolve_route, route_endpoint
from sonic.compat.help import format_run_help
from sonic.compat.parser import parse_run_args
from sonic.compat.runargs import RunArgs

__all__ = [
    "RunArgs",
    "format_run_help",
    "parse_run_args",
    "resolve_route",
    "route_endpoint",
]
