"""The fair comparison suite: one TOML file declares engines and scenarios; ``sonic suite run``
starts each engine in turn, sends every engine byte-identical workloads and keeps every result
in a resumable directory; ``sonic validate`` says whether the comparison is fair before any GPU
hour is spent.

Modules: ``config`` (TOML → typed, validated dataclasses), ``presets`` (how to launch each known
engine and which of its settings must match), ``plan`` (scenarios → runs and ``sonic run``
flags), ``lifecycle`` (server processes), ``probes`` (small HTTP calls), ``layout`` (the results
directory), ``checks``/``validate`` (validation), ``runner`` (the suite itself). Importing this
package is cheap: each module loads what it needs when used.
"""

from __future__ import annotations
