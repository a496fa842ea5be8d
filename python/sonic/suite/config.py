"""``suite.toml`` → typed, validated dataclasses.

Every error names the key that is wrong (``engines.vllm.port: expected an integer, got 'x'``)
and unknown keys are refused with the nearest known one, because a typo in a benchmark config
silently becomes a benchmark nobody meant to run. Values are only checked here; presets turn
them into argv (``presets``), the plan into ``sonic run`` flags (``plan``).

Secrets: ``env`` values are kept as written (``${HF_TOKEN}``) and expanded only when a server
is launched (``expand_env``); what is recorded anywhere is the list of env *names*.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from sonic import dialects
from sonic.datasets.registry import RUN_DATASET_NAMES as DATASETS
from sonic.datasets.registry import WORKLOAD_DATASETS
from sonic.errors import SonicError
from sonic.suite.install import InstallSpec, canonical_name, read_constraints
from sonic.suite.tomlfile import Table as _Table
from sonic.suite.tomlfile import read_toml, suggest, type_name

DEVICES = ("cpu", "gpu")
SCENARIO_KINDS = ("sweep", "search")
# The original suite's scenarios: full = 0.5…8 req/s × 100, quick = 1, 2 × 50.
FULL_RATES = (0.5, 1.0, 2.0, 4.0, 8.0)
FULL_NUM_PROMPTS = 100
QUICK_RATES = (1.0, 2.0)
QUICK_NUM_PROMPTS = 50

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ENV_REF_RE = re.compile(r"\$\{([^}]*)\}")
_PLACEHOLDERS = ("port", "host", "model")


# ---------------------------------------------------------------- typed config


@dataclass(frozen=True)
class ServerSettings:
    """Engine settings the presets translate into flags; ``None`` = the engine's default.

    ``dtype``, ``max_model_len``, ``max_num_seqs`` and ``prefix_caching`` must match between
    engines for a fair comparison (see ``presets.MUST_MATCH``).
    """

    dtype: str | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    gpu_memory_utilization: float | None = None
    chunked_prefill: bool | None = None
    prefix_caching: bool | None = None
    tensor_parallel_size: int | None = None
    device: str | None = None  # "cpu" or "gpu": MAX's --devices, vLLM's CPU environment

    def merged(self, override: ServerSettings) -> ServerSettings:
        """These settings with every non-None value of ``override`` applied."""
        given = {f.name: getattr(override, f.name) for f in fields(override)}
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class LoadSettings:
    """Where the client load comes from (``[settings] workers``, ``ray_address``): this
    process, or ``workers`` Ray actors on the cluster at ``ray_address`` (sonic.workers), and
    whether its records stream to a file while the runs go (``stream_records``, long runs in
    bounded memory). Not an engine setting: the same for every engine."""

    workers: int = 1
    ray_address: str | None = None
    stream_records: bool = False

    def flags(self) -> list[str]:
        out = ["--stream-records"] if self.stream_records else []
        if self.workers <= 1:
            return out
        out += ["--workers", str(self.workers)]
        return out + (["--ray-address", self.ray_address] if self.ray_address else [])


@dataclass(frozen=True)
class ClientOptions:
    """What each request asks for; a scenario sets them, an engine may override them (which
    validation reports as unfair unless every engine does the same)."""

    compat: str | None = None
    output_len: int | None = None
    max_output_len: int | None = None
    ignore_eos: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    extra_body: Mapping[str, Any] | None = None

    def merged(self, override: ClientOptions) -> ClientOptions:
        given = {f.name: getattr(override, f.name) for f in fields(override)}
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    def given(self) -> dict[str, Any]:
        return {
            f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None
        }


@dataclass(frozen=True)
class EngineConfig:
    name: str
    preset: str | None
    command: tuple[str, ...] | None  # explicit argv (placeholders {port} {host} {model})
    args: tuple[str, ...]  # appended to the preset's argv
    env: Mapping[str, str]  # values as written; expand with expand_env() at launch only
    host: str
    port: int  # 0: pick a free port at launch
    base_url: str | None  # external engines may give it instead of host/port
    health_path: str | None  # None: the preset's
    ready_timeout_s: float | None  # None: the preset's
    stop_timeout_s: float
    server_args: str | None  # recorded in results; None: the launch argv
    backend: str
    endpoint: str | None
    model: str | None  # what the engine loads (HF id, directory, GGUF path)
    served_model_name: str | None  # what requests name; default: model
    tokenizer: str | None
    external: bool
    profile: str | None  # sonic sim profile
    settings: ServerSettings
    client: ClientOptions
    reset_prefix_cache: bool
    reset_path: str | None  # None: the preset's
    gpu_release_timeout_s: float
    install: InstallSpec | None = None  # its own venv (``sonic suite setup``); None: PATH
    metrics_port: int | None = None  # engines with a separate metrics port (MAX); 0: free

    @property
    def request_model(self) -> str | None:
        return self.served_model_name or self.model

    @property
    def env_names(self) -> list[str]:
        return sorted(self.env)


@dataclass(frozen=True)
class ScenarioSearch:
    """A ``kind = "search"`` scenario: the capacity search each engine gets (sonic search)."""

    slo: str  # as written: "ttft:p99<=500ms,tpot:p99<=50ms"
    attainment: float | None
    over: str  # rate | concurrency
    start: float | None  # None: 1 (rate) or 1 (concurrency)
    minimum: float | None
    maximum: float | None
    resolution: float
    confirm_repeats: int | None
    max_probes: int

    def spec(self):
        """The plan's SearchSpec, defaults filled as ``sonic search`` fills them."""
        from sonic.search.plan import SearchSpec

        d = SearchSpec()
        start = self.start if self.start is not None else 1.0
        default_min = 1.0 if self.over == "concurrency" else start / 16.0
        return SearchSpec(
            over=self.over,
            start=start,
            minimum=self.minimum if self.minimum is not None else default_min,
            maximum=self.maximum if self.maximum is not None else d.maximum,
            resolution=self.resolution,
            confirm_repeats=d.confirm_repeats
            if self.confirm_repeats is None
            else self.confirm_repeats,
            max_probes=self.max_probes,
        )


@dataclass(frozen=True)
class ScenarioSessions:
    """A scenario's multi-turn and trace keys, each one ``sonic run`` flag (see README,
    "Multi-turn and trace replay"); None leaves the flag at its default."""

    num_chat_sessions: int | None = None  # --num-chat-sessions (sharegpt, random)
    num_turns: str | None = None  # --random-num-turns (random sessions): N or a distribution
    think_time_ms: str | None = None  # --delay-between-chat-turns: ms or a distribution
    history: str | None = None  # --history dataset|live
    max_concurrent_sessions: int | None = None  # --max-concurrent-conversations
    trace_speedup: float | None = None  # --trace-speedup
    trace_block_size: int | None = None  # --trace-block-size

    FLAGS = (
        ("num_chat_sessions", "--num-chat-sessions"),
        ("num_turns", "--random-num-turns"),
        ("think_time_ms", "--delay-between-chat-turns"),
        ("history", "--history"),
        ("max_concurrent_sessions", "--max-concurrent-conversations"),
        ("trace_speedup", "--trace-speedup"),
        ("trace_block_size", "--trace-block-size"),
    )

    def flags(self) -> list[str]:
        out: list[str] = []
        for key, flag in self.FLAGS:
            value = getattr(self, key)
            if value is not None:
                out += [flag, repr(value) if isinstance(value, float) else str(value)]
        return out


def _number_or_text(t: _Table, key: str) -> str | None:
    """A key that takes a number or a distribution such as "N(3,1)" (as the flag does)."""
    value = t.raw(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise t.fail(key, "expected a number or a distribution such as 'U(1,5)'")
    return str(value)


def _sessions(t: _Table) -> ScenarioSessions:
    return ScenarioSessions(
        num_chat_sessions=t.integer("num_chat_sessions", minimum=1),
        num_turns=_number_or_text(t, "num_turns"),
        think_time_ms=_number_or_text(t, "think_time_ms"),
        history=t.string("history", choices=("dataset", "live")),
        max_concurrent_sessions=t.integer("max_concurrent_sessions", minimum=1),
        trace_speedup=t.number("trace_speedup", positive=True),
        trace_block_size=t.integer("trace_block_size", minimum=1),
    )


@dataclass(frozen=True)
class ScenarioConfig:
    name: str
    dataset: str
    dataset_path: str | None
    input_len: int | None
    prefix_len: int | None
    range_ratio: float | None
    hf_subset: str | None
    hf_split: str | None
    hf_name: str | None
    request_rates: tuple[float, ...] | None  # None: the suite's (full or quick) rates
    max_concurrencies: tuple[int, ...] | None
    num_prompts: int | None
    burstiness: float | None
    warmups: int
    repeats: int
    client: ClientOptions
    search: ScenarioSearch | None = None  # kind = "search"; None: a sweep of fixed loads
    sessions: ScenarioSessions = ScenarioSessions()  # multi-turn and trace keys


@dataclass(frozen=True)
class QuickConfig:
    """What ``--quick`` uses: the original suite's 1 and 2 req/s × 50 prompts unless the file
    says otherwise (a demo on a small machine may want fewer prompts)."""

    request_rates: tuple[float, ...] = QUICK_RATES
    max_concurrencies: tuple[int, ...] | None = None
    num_prompts: int = QUICK_NUM_PROMPTS
    repeats: int | None = None
    scenarios: tuple[str, ...] | None = None


@dataclass(frozen=True)
class SuiteConfig:
    name: str
    path: Path
    base_dir: Path  # relative paths in the file are relative to it
    seed: int
    compat: str
    model: str | None
    tokenizer: str | None
    trust_remote_code: bool
    gated: bool | None  # None: guess from the model id
    settings: ServerSettings
    client: ClientOptions
    engines: tuple[EngineConfig, ...]
    scenarios: tuple[ScenarioConfig, ...]
    quick: QuickConfig
    load: LoadSettings = LoadSettings()
    full_rates: tuple[float, ...] = FULL_RATES
    full_num_prompts: int = FULL_NUM_PROMPTS
    _recorded: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    _hashed: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    def engine(self, name: str) -> EngineConfig:
        for e in self.engines:
            if e.name == name:
                return e
        raise SonicError(f"no engine named {name!r} (engines: {', '.join(self.engine_names)})")

    @property
    def engine_names(self) -> list[str]:
        return [e.name for e in self.engines]

    def select(self, names: list[str] | None) -> SuiteConfig:
        """The config restricted to ``names`` (``--engines``), in the file's order."""
        if not names:
            return self
        unknown = [n for n in names if n not in self.engine_names]
        if unknown:
            raise SonicError(
                f"--engines: unknown engine {unknown[0]!r}{suggest(unknown[0], self.engine_names)}"
            )
        return replace(self, engines=tuple(e for e in self.engines if e.name in names))

    def normalised(self) -> dict[str, Any]:
        """The config as plain JSON (defaults filled, paths resolved, env values omitted):
        safe to record."""
        return json.loads(json.dumps(self._recorded))

    def config_hash(self, quick: bool) -> str:
        """Identifies the comparison a results directory holds. Computed over every engine of
        the file, so ``--engines`` (a selection) does not change it."""
        return config_hash(self._hashed, quick)


def config_hash(normalised: Mapping[str, Any], quick: bool) -> str:
    """sha256 of the canonical JSON of the normalised config and the quick flag."""
    doc = {"config": normalised, "quick": bool(quick)}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- reading


def _name(t: _Table, name: str, what: str) -> str:
    if not _NAME_RE.match(name):
        raise SonicError(
            f"{t.source}: {t.key(name)}: bad {what} name {name!r} (letters, digits, '.', '_', "
            "'-'; at most 64 characters; it names directories)"
        )
    return name


def _settings(t: _Table) -> ServerSettings:
    s = ServerSettings(
        dtype=t.string("dtype"),
        max_model_len=t.integer("max_model_len", minimum=1),
        max_num_seqs=t.integer("max_num_seqs", minimum=1),
        max_num_batched_tokens=t.integer("max_num_batched_tokens", minimum=1),
        gpu_memory_utilization=t.number("gpu_memory_utilization", positive=True),
        chunked_prefill=t.boolean("chunked_prefill"),
        prefix_caching=t.boolean("prefix_caching"),
        tensor_parallel_size=t.integer("tensor_parallel_size", minimum=1),
        device=t.string("device", choices=DEVICES),
    )
    if s.gpu_memory_utilization is not None and s.gpu_memory_utilization > 1:
        raise t.fail("gpu_memory_utilization", f"must be at most 1, got {s.gpu_memory_utilization}")
    t.done()
    return s


_CLIENT_KEYS = (
    "compat",
    "output_len",
    "max_output_len",
    "ignore_eos",
    "temperature",
    "top_p",
    "top_k",
    "extra_body",
)


def _client(t: _Table, *, with_compat: bool = True) -> ClientOptions:
    """Client options from ``t`` (a scenario, the suite, or an engine's ``client`` table); the
    suite's own ``compat`` is read separately (it is the default for every engine)."""
    extra = t.raw("extra_body")
    if extra is not None and not isinstance(extra, dict):
        raise t.fail("extra_body", f"expected a table, got {type_name(extra)}")
    c = ClientOptions(
        compat=t.string("compat", choices=dialects.names()) if with_compat else None,
        output_len=t.integer("output_len", minimum=1),
        max_output_len=t.integer("max_output_len", minimum=1),
        ignore_eos=t.boolean("ignore_eos"),
        temperature=t.number("temperature", non_negative=True),
        top_p=t.number("top_p", positive=True),
        top_k=t.integer("top_k", minimum=-1),
        extra_body=extra,
    )
    if c.top_p is not None and c.top_p > 1:
        raise t.fail("top_p", f"must be in (0, 1], got {c.top_p}")
    return c


def _engine(
    name: str,
    t: _Table,
    suite_model: str | None,
    suite_tok: str | None,
    base_dir: Path | None = None,
    missing_constraints_ok: bool = False,
) -> EngineConfig:
    from sonic.suite.presets import PRESETS

    preset = t.string("preset")
    if preset is not None and preset not in PRESETS:
        raise t.fail(
            "preset",
            f"unknown preset {preset!r}{suggest(preset, list(PRESETS))} "
            f"(known: {', '.join(PRESETS)})",
        )
    command = t.strings("command")
    if command is not None and not command:
        raise t.fail("command", "must not be empty")
    external = bool(t.boolean("external", False))
    if preset is not None and command is not None:
        raise t.fail("command", "give either preset or command, not both")
    if preset is None and command is None and not external:
        raise SonicError(
            f"{t.source}: {t.where}: needs a preset ({', '.join(PRESETS)}), a command (argv "
            "list) or external = true"
        )
    if command is not None:
        for i, arg in enumerate(command):
            for ph in re.findall(r"\{([^{}]*)\}", arg):
                if ph not in _PLACEHOLDERS:
                    raise t.fail(
                        f"command[{i}]",
                        f"unknown placeholder {{{ph}}} (known: "
                        + ", ".join("{" + p + "}" for p in _PLACEHOLDERS)
                        + ")",
                    )

    env_t = t.table("env")
    env: dict[str, str] = {}
    for key in list(env_t.data):
        if not _ENV_NAME_RE.match(key):
            raise env_t.fail(key, "not a valid environment variable name")
        value = env_t.raw(key)
        if not isinstance(value, str):
            raise env_t.fail(key, f"expected a string, got {type_name(value)}")
        for ref in _ENV_REF_RE.findall(value):
            if not _ENV_NAME_RE.match(ref):
                raise env_t.fail(key, f"bad reference ${{{ref}}}")
        env[key] = value
    env_t.done()

    host = t.string("host", "127.0.0.1") or "127.0.0.1"
    if any(c in host for c in "/ \t"):
        raise t.fail("host", f"expected a host name or address, got {host!r}")
    port = t.integer("port", 0, minimum=0) or 0
    if port > 65535:
        raise t.fail("port", f"must be at most 65535, got {port}")
    base_url = t.string("base_url")
    if base_url is not None:
        if not external:
            raise t.fail("base_url", "only external engines take a base_url (set host and port)")
        if not re.match(r"^https?://[^/\s]+", base_url):
            raise t.fail("base_url", "expected http://host:port[/prefix]")
        base_url = base_url.rstrip("/")
    if external and base_url is None and port == 0:
        raise t.fail("port", "an external engine needs its port (or base_url)")
    if command is not None and port == 0 and not any("{port}" in a for a in command):
        raise t.fail("port", "set the port the command listens on, or use {port} in the command")

    reset_path = t.string("reset_path")
    if reset_path is not None and not reset_path.startswith("/"):
        raise t.fail("reset_path", f"must start with '/', got {reset_path!r}")
    health = t.string("health_path")
    if health is not None and not health.startswith("/"):
        raise t.fail("health_path", f"must start with '/', got {health!r}")
    endpoint = t.string("endpoint")
    if endpoint is not None and not endpoint.startswith("/"):
        raise t.fail("endpoint", f"must start with '/', got {endpoint!r}")

    profile = t.string("profile")
    if profile is not None and preset != "sim":
        raise t.fail("profile", "only the sim preset takes a profile")

    model = t.string("model", suite_model)
    install = _install(t, base_dir or Path.cwd(), missing_constraints_ok)
    if install is not None and (external or command is not None):
        raise t.fail("install", "only preset engines are installed (a command gives its own path)")
    metrics_port = t.integer("metrics_port", minimum=0)
    if metrics_port is not None and metrics_port > 65535:
        raise t.fail("metrics_port", f"must be at most 65535, got {metrics_port}")
    default_backend = PRESETS[preset].backend if preset else "openai"
    engine = EngineConfig(
        name=name,
        preset=preset,
        command=command,
        args=t.strings("args") or (),
        env=env,
        host=host,
        port=port,
        base_url=base_url,
        health_path=health,
        ready_timeout_s=t.number("ready_timeout_s", positive=True),
        stop_timeout_s=t.number("stop_timeout_s", 30.0, positive=True) or 30.0,
        server_args=t.string("server_args"),
        backend=t.string("backend", default_backend) or default_backend,
        endpoint=endpoint,
        model=model,
        served_model_name=t.string("served_model_name"),
        tokenizer=t.string("tokenizer", suite_tok),
        external=external,
        profile=profile,
        settings=_settings(t.table("settings")),
        client=_client_table(t.table("client")),
        reset_prefix_cache=bool(t.boolean("reset_prefix_cache", False)),
        reset_path=reset_path,
        gpu_release_timeout_s=t.number("gpu_release_timeout_s", 120.0, non_negative=True) or 0.0,
        install=install,
        metrics_port=metrics_port,
    )
    if external and (engine.args or engine.env):
        raise t.fail("args" if engine.args else "env", "an external engine is not launched")
    if preset is not None and PRESETS[preset].needs_model and not model and not external:
        raise t.fail("model", f"the {preset} preset needs a model (here or in [suite])")
    t.done()
    return engine


def _install(t: _Table, base_dir: Path, missing_constraints_ok: bool = False) -> InstallSpec | None:
    """``install`` (a requirement or a list), ``install_no_deps``, ``requirements_override``
    (a table: distribution name -> the requirement to use instead), ``install_pip_args``,
    ``install_python``, ``constraints`` (the lock file, relative to the suite file)."""
    raw = t.raw("install")
    keys = (
        "install_no_deps",
        "requirements_override",
        "install_pip_args",
        "install_python",
        "constraints",
    )
    if raw is None:
        for k in keys:
            if t.has(k):
                raise t.fail(k, "needs install (the engine's pinned requirements)")
        return None
    if isinstance(raw, str):
        packages: tuple[str, ...] = (raw,)
    elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
        packages = tuple(raw)
    else:
        raise t.fail("install", "expected a requirement string or a non-empty list of them")
    for i, req in enumerate(packages):
        if not req.strip() or req.strip().startswith("-"):
            raise t.fail(f"install[{i}]", f"expected a requirement like 'pkg==1.2', got {req!r}")
    over_t = t.table("requirements_override")
    overrides: dict[str, str] = {}
    for key in list(over_t.data):
        value = over_t.string(key)
        if value is None or canonical_name(value) != canonical_name(key):
            raise over_t.fail(key, f"expected a requirement for {key} (e.g. '{key}==1.0')")
        overrides[canonical_name(key)] = value
    over_t.done()
    constraints = None
    lock = t.string("constraints")
    if lock is not None:
        if not lock.strip():
            raise t.fail("constraints", "expected the path of a constraints (lock) file")
        lock_path = (base_dir / os.path.expanduser(lock)).resolve()
        try:
            constraints = read_constraints(lock_path, missing_ok=missing_constraints_ok)
        except SonicError as exc:
            raise t.fail("constraints", str(exc)) from None
    return InstallSpec(
        packages=packages,
        no_deps=bool(t.boolean("install_no_deps", False)),
        overrides=overrides,
        pip_args=t.strings("install_pip_args") or (),
        python=t.string("install_python"),
        constraints=constraints,
    )


def _client_table(t: _Table) -> ClientOptions:
    """An engine's ``client`` table. Its ``compat`` is refused: every engine of a suite is
    measured under the suite's (or the scenario's) one dialect, so no engine gets other rules."""
    if t.raw("compat") is not None:
        raise t.fail(
            "compat",
            "every engine is measured under one dialect; set compat in [suite] or a scenario",
        )
    c = _client(t, with_compat=False)
    t.done()
    return c


def _scenario(name: str, t: _Table) -> ScenarioConfig:
    dataset = t.string("dataset", choices=DATASETS)
    if dataset is None:
        raise t.fail("dataset", f"missing (one of {', '.join(DATASETS)})")
    path = t.string("dataset_path")
    if dataset in ("custom", "hf", *WORKLOAD_DATASETS) and path is None:
        raise t.fail("dataset_path", f"the {dataset} dataset needs a dataset_path")
    input_len = t.integer("input_len", minimum=1)
    prefix_len = t.integer("prefix_len", minimum=0)
    range_ratio = t.number("range_ratio", non_negative=True)
    with_lengths = ("random", "sonnet", "prefix_repetition")
    if input_len is not None and dataset not in with_lengths:
        raise t.fail("input_len", "only the random, sonnet and prefix_repetition datasets take one")
    if prefix_len is not None and dataset not in with_lengths:
        raise t.fail(
            "prefix_len", "only the random, sonnet and prefix_repetition datasets take one"
        )
    if range_ratio is not None and dataset != "random":
        raise t.fail("range_ratio", "only the random dataset takes a range_ratio")
    hf = {k: t.string(k) for k in ("hf_subset", "hf_split", "hf_name")}
    for k, v in hf.items():
        if v is not None and dataset != "hf":
            raise t.fail(k, "only the hf dataset takes it")
    rates = t.numbers("request_rates", allow_inf=True)
    concurrencies = t.integers("max_concurrencies")
    kind = t.string("kind", "sweep", choices=SCENARIO_KINDS)
    search = _search(t) if kind == "search" else None
    if search is not None:
        for key, given in (("request_rates", rates), ("max_concurrencies", concurrencies)):
            if given is not None:
                raise t.fail(key, "a search scenario chooses its loads (use search_start)")
        if t.integer("repeats", minimum=1) is not None:
            raise t.fail("repeats", "a search repeats its answer itself (use confirm_repeats)")
    s = ScenarioConfig(
        name=name,
        dataset=dataset,
        dataset_path=path,
        input_len=input_len,
        prefix_len=prefix_len,
        range_ratio=range_ratio,
        hf_subset=hf["hf_subset"],
        hf_split=hf["hf_split"],
        hf_name=hf["hf_name"],
        request_rates=rates,
        max_concurrencies=concurrencies,
        num_prompts=t.integer("num_prompts", minimum=1),
        burstiness=t.number("burstiness", positive=True, allow_inf=True),
        warmups=t.integer("warmups", 0, minimum=0) or 0,
        repeats=t.integer("repeats", 1, minimum=1) or 1,
        client=_client(t),
        search=search,
        sessions=_sessions(t),
    )
    t.done()
    return s


def _search(t: _Table) -> ScenarioSearch:
    """The search keys of a ``kind = "search"`` scenario, checked as ``sonic search`` checks
    its flags."""
    from sonic.search.plan import SEARCH_OVER, SearchSpec
    from sonic.search.slo import parse_slos

    d = SearchSpec()
    raw = t.raw("slo")
    if isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        slo = ",".join(raw)
    elif isinstance(raw, str):
        slo = raw
    else:
        raise t.fail("slo", 'a search needs its SLOs, e.g. slo = "ttft:p99<=500ms,tpot:p99<=50ms"')
    attainment = t.number("slo_attainment", positive=True)
    if attainment is not None and attainment > 1:
        raise t.fail("slo_attainment", f"must lie in (0, 1], got {attainment}")
    try:
        parse_slos(slo, attainment=attainment is not None)
    except SonicError as exc:
        raise t.fail("slo", str(exc)) from None
    over = t.string("search_over", d.over, choices=SEARCH_OVER) or d.over
    s = ScenarioSearch(
        slo=slo,
        attainment=attainment,
        over=over,
        start=t.number("search_start", positive=True),
        minimum=t.number("search_min", positive=True),
        maximum=t.number("search_max", positive=True),
        resolution=t.number("search_resolution", d.resolution, positive=True) or d.resolution,
        confirm_repeats=t.integer("confirm_repeats", d.confirm_repeats, minimum=0),
        max_probes=t.integer("search_max_probes", d.max_probes, minimum=1) or d.max_probes,
    )
    spec = s.spec()
    if not (spec.minimum <= spec.start <= spec.maximum):
        raise t.fail("search_start", "needs search_min <= search_start <= search_max")
    if not 0 < spec.resolution < 1:
        raise t.fail("search_resolution", "must lie between 0 and 1 (e.g. 0.05 = 5%)")
    return s


def _quick(t: _Table, scenario_names: list[str]) -> QuickConfig:
    names = t.strings("scenarios")
    if names is not None:
        for i, n in enumerate(names):
            if n not in scenario_names:
                raise t.fail(f"scenarios[{i}]", f"no scenario {n!r}{suggest(n, scenario_names)}")
    q = QuickConfig(
        request_rates=t.numbers("request_rates", allow_inf=True) or QUICK_RATES,
        max_concurrencies=t.integers("max_concurrencies"),
        num_prompts=t.integer("num_prompts", QUICK_NUM_PROMPTS, minimum=1) or QUICK_NUM_PROMPTS,
        repeats=t.integer("repeats", minimum=1),
        scenarios=names,
    )
    t.done()
    return q


def load_config(
    path: str | os.PathLike[str], *, missing_constraints_ok: bool = False
) -> SuiteConfig:
    """Read and validate a suite file. Raises SonicError naming the bad key.

    ``missing_constraints_ok``: a ``constraints`` file that does not exist yet is accepted (for
    ``sonic suite lock``, which writes it); everywhere else it is an error."""
    p = Path(path)
    return parse_config(read_toml(p), p, missing_constraints_ok=missing_constraints_ok)


def parse_config(
    data: dict[str, Any], path: Path, *, missing_constraints_ok: bool = False
) -> SuiteConfig:
    """Validate already-parsed TOML (``path`` names the source and anchors relative paths)."""
    source = path.name
    root = _Table(data, "", source)
    suite_t = root.table("suite")
    name = suite_t.string("name", path.stem) or path.stem
    _name(suite_t, name, "suite")
    seed = suite_t.integer("seed", 0, minimum=0) or 0
    compat = suite_t.string("compat", dialects.DEFAULT, choices=dialects.names())
    compat = compat or dialects.DEFAULT
    model = suite_t.string("model")
    tokenizer = suite_t.string("tokenizer")
    trust = bool(suite_t.boolean("trust_remote_code", False))
    gated = suite_t.boolean("gated")
    full_rates = suite_t.numbers("request_rates", allow_inf=True) or FULL_RATES
    full_n = suite_t.integer("num_prompts", FULL_NUM_PROMPTS, minimum=1) or FULL_NUM_PROMPTS
    suite_client = _client(suite_t, with_compat=False)
    suite_t.done()

    settings_t = root.table("settings")
    load = LoadSettings(
        workers=settings_t.integer("workers", 1, minimum=1) or 1,
        ray_address=settings_t.string("ray_address"),
        stream_records=bool(settings_t.boolean("stream_records", False)),
    )
    if load.ray_address and load.workers < 2:
        raise settings_t.fail("ray_address", "needs workers = 2 or more")
    if load.stream_records and load.workers > 1:
        raise settings_t.fail(
            "stream_records",
            "not available with workers = 2 or more (their records come back in memory)",
        )
    settings = _settings(settings_t)

    engines_t = root.table("engines")
    if not engines_t.data:
        raise SonicError(f"{source}: engines: declare at least one engine ([engines.NAME])")
    engines = []
    for ename in list(engines_t.data):
        _name(engines_t, ename, "engine")
        e = _engine(
            ename,
            engines_t.table(ename),
            model,
            tokenizer,
            path.resolve().parent,
            missing_constraints_ok,
        )
        engines.append(replace(e, settings=settings.merged(e.settings)))
    engines_t.done()
    ports = {}
    for e in engines:
        if e.external and e.port and (e.host, e.port) in ports:
            raise SonicError(
                f"{source}: engines.{e.name}.port: {e.port} is also engine "
                f"{ports[(e.host, e.port)]!r}'s"
            )
        ports[(e.host, e.port)] = e.name

    scen_t = root.table("scenarios")
    if not scen_t.data:
        raise SonicError(f"{source}: scenarios: declare at least one scenario ([scenarios.NAME])")
    scenarios = []
    for sname in list(scen_t.data):
        _name(scen_t, sname, "scenario")
        s = _scenario(sname, scen_t.table(sname))
        scenarios.append(replace(s, client=suite_client.merged(s.client)))
    scen_t.done()
    quick = _quick(root.table("quick"), [s.name for s in scenarios])
    root.done()

    cfg = SuiteConfig(
        name=name,
        path=path,
        base_dir=path.resolve().parent,
        seed=seed,
        compat=compat,
        model=model,
        tokenizer=tokenizer,
        trust_remote_code=trust,
        gated=gated,
        settings=settings,
        client=suite_client,
        engines=tuple(engines),
        scenarios=tuple(scenarios),
        quick=quick,
        load=load,
        full_rates=full_rates,
        full_num_prompts=full_n,
    )
    recorded, hashed = _normalise(cfg)
    return replace(cfg, _recorded=recorded, _hashed=hashed)


# ---------------------------------------------------------------- helpers for later layers


def resolve_path(cfg: SuiteConfig, value: str | None) -> str | None:
    """A path from the file, relative to the file's directory; names that are not local paths
    (HF ids like ``meta-llama/Meta-Llama-3-8B-Instruct``) are returned unchanged; ``sonic:NAME``
    is what sonic ships (sonic.resources)."""
    from sonic.resources import is_resource, resolve

    if value is None:
        return None
    if is_resource(value):
        return resolve(value)
    p = Path(os.path.expanduser(value))
    if p.is_absolute():
        return str(p)
    candidate = cfg.base_dir / p
    if candidate.exists() or value.startswith((".", "~")):
        return str(candidate.resolve())
    return value


def expand_env(engine: EngineConfig, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Engine env values with ``${VAR}`` taken from ``environ`` (default os.environ).

    A reference to an unset variable is an error that names the key, never the value.
    """
    environ = os.environ if environ is None else environ
    out = {}
    for key, template in engine.env.items():

        def sub(m: re.Match[str], key: str = key) -> str:
            ref = m.group(1)
            if ref not in environ:
                raise SonicError(
                    f"engines.{engine.name}.env.{key}: ${{{ref}}} is not set in the environment"
                )
            return environ[ref]

        out[key] = _ENV_REF_RE.sub(sub, template)
    return out


def missing_env_refs(engine: EngineConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """``KEY (${REF})`` for every env value that references an unset variable."""
    environ = os.environ if environ is None else environ
    out = []
    for key, template in engine.env.items():
        for ref in _ENV_REF_RE.findall(template):
            if ref not in environ:
                out.append(f"{key} (${{{ref}}})")
    return out


def secret_values(engine: EngineConfig, environ: Mapping[str, str] | None = None) -> list[str]:
    """Expanded env values that came from the environment: scrubbed from anything we write."""
    environ = os.environ if environ is None else environ
    out = []
    for template in engine.env.values():
        for ref in _ENV_REF_RE.findall(template):
            value = environ.get(ref)
            if value and len(value) >= 4:
                out.append(value)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY"):
        value = environ.get(name)
        if value and len(value) >= 4:
            out.append(value)
    return out


def _normalise(cfg: SuiteConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Canonical JSON of the config: what the hash covers and what the manifest records.

    Returns (recorded, hashed). The recorded copy lists env *names* only; the hashed one has
    the values as written (``${HF_TOKEN}``, never an expanded secret), so a changed server
    environment still refuses a resume.
    """

    def engine_doc(e: EngineConfig, with_env: bool) -> dict[str, Any]:
        d = asdict(e)
        d["settings"] = e.settings.as_dict()
        d["client"] = e.client.given()
        d["env"] = dict(sorted(e.env.items())) if with_env else e.env_names
        d["model"] = e.model
        d["install"] = e.install.as_dict() if e.install else None
        d["tokenizer"] = resolve_path(cfg, e.tokenizer)
        return d

    def scenario_doc(s: ScenarioConfig) -> dict[str, Any]:
        d = asdict(s)
        d["client"] = s.client.given()
        d["dataset_path"] = resolve_path(cfg, s.dataset_path)
        d["request_rates"] = (
            None if s.request_rates is None else [_rate(r) for r in s.request_rates]
        )
        d["burstiness"] = None if s.burstiness is None else _rate(s.burstiness)
        return d

    def doc(with_env: bool) -> dict[str, Any]:
        return {
            "name": cfg.name,
            "seed": cfg.seed,
            "compat": cfg.compat,
            "model": cfg.model,
            "tokenizer": resolve_path(cfg, cfg.tokenizer),
            "trust_remote_code": cfg.trust_remote_code,
            "gated": cfg.gated,
            "full": {
                "request_rates": [_rate(r) for r in cfg.full_rates],
                "num_prompts": cfg.full_num_prompts,
            },
            "quick": {
                "request_rates": [_rate(r) for r in cfg.quick.request_rates],
                "max_concurrencies": None
                if cfg.quick.max_concurrencies is None
                else list(cfg.quick.max_concurrencies),
                "num_prompts": cfg.quick.num_prompts,
                "repeats": cfg.quick.repeats,
                "scenarios": None if cfg.quick.scenarios is None else list(cfg.quick.scenarios),
            },
            "engines": [engine_doc(e, with_env) for e in cfg.engines],
            "scenarios": [scenario_doc(s) for s in cfg.scenarios],
            **({"load": asdict(cfg.load)} if cfg.load != LoadSettings() else {}),
        }

    return _json_safe(doc(with_env=False)), _json_safe(doc(with_env=True))


def _rate(r: float) -> float | str:
    return "inf" if math.isinf(r) else r


def _json_safe(doc: Any) -> Any:
    return json.loads(json.dumps(doc, default=str))
