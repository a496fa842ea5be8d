"""Scenarios → runs, and each run → ``sonic run`` flags.

Every run is described as the flags a user would pass to ``sonic run`` and parsed by the same
``parse_run_args``, so flag semantics (profiles, defaults, validation) have one source of
truth and a suite run can be replayed by hand from its recorded ``client_args``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sonic.errors import SonicError
from sonic.suite.config import (
    ClientOptions,
    EngineConfig,
    ScenarioConfig,
    SuiteConfig,
    resolve_path,
)

if TYPE_CHECKING:
    from sonic.compat.runargs import RunArgs

# Dataset → (input-length flag, output-length flag, prefix-length flag).
_LEN_FLAGS = {
    "random": ("--random-input-len", "--random-output-len", "--random-prefix-len"),
    "sonnet": ("--sonnet-input-len", "--sonnet-output-len", "--sonnet-prefix-len"),
    "sharegpt": (None, "--sharegpt-output-len", None),
    "code_debug": (None, "--sharegpt-output-len", None),
    "custom": (None, "--custom-output-len", None),
    "hf": (None, "--hf-output-len", None),
    "prefix_repetition": (
        "--prefix-repetition-suffix-len",
        "--prefix-repetition-output-len",
        "--prefix-repetition-prefix-len",
    ),
    # Lengths of sessions and traces come from the file (or the session flags).
    "trace": (None, None, None),
    "timed_trace": (None, None, None),
    "sessions": (None, None, None),
}


def rate_text(rate: float) -> str:
    """A rate as ``sonic run`` takes it and as it appears in run ids: ``inf`` or ``2.0``."""
    return "inf" if math.isinf(rate) else repr(float(rate))


@dataclass(frozen=True)
class ScenarioPlan:
    """A scenario with the mode (full or quick) applied."""

    scenario: ScenarioConfig
    request_rates: tuple[float, ...]
    max_concurrencies: tuple[int | None, ...]
    num_prompts: int
    repeats: int

    @property
    def name(self) -> str:
        return self.scenario.name

    @property
    def is_search(self) -> bool:
        return self.scenario.search is not None

    def first_point(self) -> tuple[float, int | None]:
        """(rate, concurrency) of the first run: what validation and ``--dry-run`` parse the
        flags with. A search starts at its ``search_start``."""
        search = self.scenario.search
        if search is None:
            return self.request_rates[0], self.max_concurrencies[0]
        spec = search.spec()
        if spec.over == "concurrency":
            return math.inf, int(spec.start)
        return spec.start, None

    def search_line(self) -> str | None:
        """How ``--dry-run`` describes a search scenario; None for a sweep."""
        search = self.scenario.search
        if search is None:
            return None
        spec = search.spec()
        return (
            f"capacity search over {spec.over} from {spec.start:g} "
            f"(within {spec.minimum:g}..{spec.maximum:g}, resolution {spec.resolution:.0%}), "
            f"SLO {search.slo}, {self.num_prompts} prompts per probe, "
            f"{spec.confirm_repeats} confirming repeats, at most {spec.max_probes} probes"
        )

    def points(self) -> Iterator[tuple[float, int | None, int]]:
        """(rate, concurrency, repeat): each repeat is a whole sweep, so slow drift over time
        affects every point alike instead of piling onto the last ones. A search scenario has
        no fixed points: its probes are chosen as it goes."""
        if self.is_search:
            return
        for rep in range(1, self.repeats + 1):
            for conc in self.max_concurrencies:
                for rate in self.request_rates:
                    yield rate, conc, rep


@dataclass(frozen=True)
class RunSpec:
    """One measured run: engine × scenario × rate × concurrency × repeat."""

    engine: str
    scenario: str
    dataset: str
    request_rate: float
    max_concurrency: int | None
    repeat: int

    @property
    def stem(self) -> str:
        conc = "none" if self.max_concurrency is None else str(self.max_concurrency)
        return f"rate-{rate_text(self.request_rate)}_conc-{conc}_rep-{self.repeat}"

    @property
    def id(self) -> str:
        return f"{self.engine}/{self.scenario}/{self.stem}"

    @property
    def rel_dir(self) -> str:
        return f"runs/{self.engine}/{self.scenario}"

    @property
    def rel_file(self) -> str:
        return f"{self.rel_dir}/{self.stem}.json"


@dataclass(frozen=True)
class SearchRun:
    """One capacity search: engine × search scenario; its probes and ``search.json`` live
    in ``rel_dir``."""

    engine: str
    scenario: str
    dataset: str

    @property
    def id(self) -> str:
        return f"{self.engine}/{self.scenario}/search"

    @property
    def rel_dir(self) -> str:
        return f"runs/{self.engine}/{self.scenario}/search"


def searches_for(engine: EngineConfig, plans: list[ScenarioPlan]) -> list[SearchRun]:
    return [SearchRun(engine.name, p.name, p.scenario.dataset) for p in plans if p.is_search]


def scenario_plans(cfg: SuiteConfig, quick: bool) -> list[ScenarioPlan]:
    """The scenarios this mode runs, with their rates, concurrencies, prompts and repeats.

    Full: the scenario's lists (else the suite's 0.5…8 req/s) and num_prompts (else 100).
    Quick: the ``[quick]`` rates (default 1 and 2 req/s) and num_prompts (default 50); a
    scenario that sweeps only concurrencies keeps sending at rate inf.
    """
    out = []
    q = cfg.quick
    for s in cfg.scenarios:
        if quick and q.scenarios is not None and s.name not in q.scenarios:
            continue
        concurrency_only = s.max_concurrencies is not None and s.request_rates is None
        if quick:
            rates = (math.inf,) if concurrency_only else q.request_rates
            concs = q.max_concurrencies or s.max_concurrencies
            n = q.num_prompts
            repeats = q.repeats or s.repeats
        else:
            rates = (math.inf,) if concurrency_only else (s.request_rates or cfg.full_rates)
            concs = s.max_concurrencies
            n = s.num_prompts or cfg.full_num_prompts
            repeats = s.repeats
        if s.search is not None:  # the search chooses its loads
            rates, concs, repeats = (), None, 1
            # A probe must be several times the load it tests to measure it at all, so a
            # search keeps its own probe size in quick mode too.
            n = s.num_prompts or n
        out.append(
            ScenarioPlan(
                scenario=s,
                request_rates=tuple(rates),
                max_concurrencies=tuple(concs) if concs else (None,),
                num_prompts=n,
                repeats=repeats,
            )
        )
    if not out:
        raise SonicError("no scenario to run in this mode (check [quick] scenarios)")
    return out


def runs_for(engine: EngineConfig, plans: list[ScenarioPlan]) -> list[RunSpec]:
    return [
        RunSpec(engine.name, p.name, p.scenario.dataset, rate, conc, rep)
        for p in plans
        for rate, conc, rep in p.points()
    ]


def client_options(cfg: SuiteConfig, engine: EngineConfig, s: ScenarioConfig) -> ClientOptions:
    """The scenario's client options with the engine's overrides (the suite's as defaults)."""
    base = ClientOptions(compat=cfg.compat).merged(s.client)
    return base.merged(engine.client)


def tokenizer_for(cfg: SuiteConfig, engine: EngineConfig) -> str | None:
    return resolve_path(cfg, engine.tokenizer) or resolve_path(cfg, engine.request_model)


def model_path(cfg: SuiteConfig, engine: EngineConfig) -> str | None:
    """What the engine loads: a local path resolved against the suite file, else as written."""
    return resolve_path(cfg, engine.model)


def run_flags(
    cfg: SuiteConfig,
    engine: EngineConfig,
    plan: ScenarioPlan,
    *,
    url: str,
    model: str | None,
    request_rate: float,
    max_concurrency: int | None,
    result_dir: str | None = None,
    result_filename: str | None = None,
    server_args: str = "",
    metrics_url: str | None = None,
) -> list[str]:
    """The ``sonic run`` argv of one run (or, without result paths, of its workload)."""
    s = plan.scenario
    c = client_options(cfg, engine, s)
    flags = ["--compat", c.compat or cfg.compat, "--backend", engine.backend, "--base-url", url]
    if engine.endpoint:
        flags += ["--endpoint", engine.endpoint]
    if model:
        flags += ["--model", model]
    tokenizer = tokenizer_for(cfg, engine)
    if tokenizer:
        flags += ["--tokenizer", tokenizer]
    if cfg.trust_remote_code:
        flags += ["--trust-remote-code"]
    flags += ["--dataset-name", s.dataset]
    path = resolve_path(cfg, s.dataset_path)
    if path:
        flags += ["--dataset-path", path]
    in_flag, out_flag, prefix_flag = _LEN_FLAGS[s.dataset]
    if s.input_len is not None and in_flag:
        flags += [in_flag, str(s.input_len)]
    if s.prefix_len is not None and prefix_flag:
        flags += [prefix_flag, str(s.prefix_len)]
    if c.output_len is not None and out_flag:
        flags += [out_flag, str(c.output_len)]
    if s.range_ratio is not None:
        flags += ["--random-range-ratio", repr(s.range_ratio)]
    for key, flag in (("hf_subset", "--hf-subset"), ("hf_split", "--hf-split")):
        value = getattr(s, key)
        if value is not None:
            flags += [flag, value]
    if s.hf_name is not None:
        flags += ["--hf-name", s.hf_name]
    flags += s.sessions.flags()
    flags += ["--num-prompts", str(plan.num_prompts), "--seed", str(cfg.seed)]
    flags += ["--request-rate", rate_text(request_rate)]
    if max_concurrency is not None:
        flags += ["--max-concurrency", str(max_concurrency)]
    if s.burstiness is not None:
        flags += ["--burstiness", rate_text(s.burstiness)]
    if s.warmups:
        flags += ["--num-warmups", str(s.warmups)]
    if c.ignore_eos is not None:
        flags += [f"--ignore-eos={'true' if c.ignore_eos else 'false'}"]
    if c.max_output_len is not None:
        flags += ["--max-output-len", str(c.max_output_len)]
    if c.temperature is not None:
        flags += ["--temperature", repr(c.temperature)]
    if c.top_p is not None:
        flags += ["--top-p", repr(c.top_p)]
    if c.top_k is not None:
        flags += ["--top-k", str(c.top_k)]
    if c.extra_body:
        flags += ["--extra-body", json.dumps(dict(c.extra_body), sort_keys=True)]
    # The suite resets each engine's prefix cache itself, as the engine's config says
    # (reset_prefix_cache / reset_path), so the run must not flush again under MAX's default.
    flags += ["--label", engine.name, "--disable-tqdm", "--no-flush-prefix-cache"]
    flags += cfg.load.flags()
    if server_args:
        flags += ["--server-args", server_args]
    if metrics_url:
        # Engines with a separate metrics port (MAX): scrape where the session put it.
        flags += ["--server-metrics-url", metrics_url]
    if result_dir is not None and result_filename is not None:
        flags += ["--save-result", "--save-detailed"]
        flags += ["--result-dir", result_dir, "--result-filename", result_filename]
    return flags


def parse_flags(engine: EngineConfig, plan: ScenarioPlan, flags: list[str]) -> RunArgs:
    """``parse_run_args`` with the engine and scenario named in any error."""
    from sonic.compat import parse_run_args

    try:
        return parse_run_args(flags)
    except SonicError as exc:
        raise SonicError(f"engine {engine.name!r}, scenario {plan.name!r}: {exc}") from None
