"""Is this comparison fair, and can it run here? The checks behind ``sonic validate`` and the
first step of ``sonic suite run``.

Static checks need no server: environment (HF token for gated models, engine executables,
Python dependencies), the workloads (tokenizer and dataset load; every engine gets the same
prompts), fairness of what the engines are asked (rules, sampling, output lengths, server
settings that must match) and a client self-check against an embedded simulated engine.
Live checks need the server up: health, ``/v1/models``, the settings it reports and a
response-consistency probe. ``suite run`` does the live ones while each engine is up for its
runs instead of starting every server twice.
"""

from __future__ import annotations

import difflib
import importlib.util
import math
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonic.errors import SonicError
from sonic.suite import plan as P
from sonic.suite.checks import FAIL, FAIRNESS, INFO, PASS, SUITE, WARN, Validation, engine_scope
from sonic.suite.config import EngineConfig, SuiteConfig, missing_env_refs
from sonic.suite.engines import launch_for, preset_of, request_model
from sonic.suite.presets import MUST_MATCH, canonical_dtype
from sonic.suite.probes import PROBE_MAX_TOKENS
from sonic.suite.workloads import Workload, Workloads

# Hub organisations whose models need an accepted licence and a token to download.
GATED_PREFIXES = ("meta-llama/", "mistralai/", "google/gemma", "google/codegemma", "CohereForAI/")

_PLACEHOLDER_URL = "http://127.0.0.1:8000"


@dataclass
class Prepared:
    """An engine × scenario ready to run: its parsed args (placeholder URL) and workload."""

    engine: str
    scenario: str
    args: Any
    workload: Workload | None


# ---------------------------------------------------------------- environment


# What a run and its report import (pyproject's dependencies that have a module of that name).
REQUIRED_MODULES = ("numpy", "tokenizers", "jinja2", "pandas", "matplotlib")


def _is_local(name: str) -> bool:
    from sonic.resources import is_resource

    return (
        is_resource(name)
        or Path(os.path.expanduser(name)).exists()
        or name.startswith((".", "/", "~"))
    )


def gated_models(cfg: SuiteConfig) -> list[str]:
    names = {cfg.model, cfg.tokenizer, *(e.model for e in cfg.engines)}
    names |= {e.tokenizer for e in cfg.engines}
    found = sorted(n for n in names if n and not _is_local(n) and n.startswith(GATED_PREFIXES))
    if cfg.gated is False:
        return []
    if cfg.gated is True and not found:
        return sorted(n for n in names if n and not _is_local(n))
    return found


def _hf_token_present() -> bool:
    if os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN"):
        return True
    try:
        from huggingface_hub import get_token

        return bool(get_token())
    except Exception:
        return False


def check_environment(cfg: SuiteConfig, v: Validation) -> None:
    gated = gated_models(cfg)
    if gated:
        if _hf_token_present():
            v.add(
                "environment.hf_token",
                PASS,
                f"a Hugging Face token is available for gated {', '.join(gated)} (value not shown)",
            )
        else:
            v.add(
                "environment.hf_token",
                FAIL,
                f"{', '.join(gated)} is gated and no Hugging Face token was found",
                "export HF_TOKEN=... (or run `huggingface-cli login`) after accepting the "
                "model's licence on the Hub; or point model/tokenizer at a local directory",
            )
    missing = [m for m in REQUIRED_MODULES if importlib.util.find_spec(m) is None]
    core = importlib.util.find_spec("sonic._core") is not None
    if missing or not core:
        what = missing + ([] if core else ["sonic._core (the Rust client)"])
        v.add(
            "environment.python",
            FAIL,
            f"missing Python modules: {', '.join(what)}",
            "reinstall sonic-bench (pip install sonic-bench, or `make install` in a checkout)",
        )
    else:
        v.add(
            "environment.python",
            PASS,
            f"{', '.join(REQUIRED_MODULES)} and the Rust client load",
        )


def _executable_ok(argv0: str) -> bool:
    if os.sep in argv0:
        return os.path.isfile(argv0) and os.access(argv0, os.X_OK)
    return shutil.which(argv0) is not None


def _python_has(python: str, module: str) -> bool:
    code = f"import importlib.util,sys; sys.exit(0 if importlib.util.find_spec({module!r}) else 1)"
    try:
        return subprocess.run([python, "-c", code], timeout=60, capture_output=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def check_engines(cfg: SuiteConfig, v: Validation) -> None:
    """Per engine: can it be launched (executable, env references), and which of its settings
    the suite cannot control."""
    for e in cfg.engines:
        scope = engine_scope(e.name)
        if e.external:
            v.add(
                f"engine.{e.name}.launch",
                PASS,
                "external: already running, not started or stopped by the suite",
                scope=scope,
            )
            continue
        launch = launch_for(cfg, e, e.port or 8000)
        exe = launch.argv[0]
        preset = preset_of(e)
        if e.install is not None:
            check_install(cfg, e, v)
        elif not _executable_ok(exe):
            v.add(
                f"engine.{e.name}.launch",
                FAIL,
                f"{exe}: not found on PATH",
                f"install {preset.title if preset else exe} or put it on PATH, or give a "
                "`command` with the full path",
                scope=scope,
            )
        elif (
            preset is not None
            and preset.python_module
            and not _python_has(exe, preset.python_module)
        ):
            v.add(
                f"engine.{e.name}.launch",
                FAIL,
                f"{exe} cannot import {preset.python_module}",
                f"install {preset.python_module} for {exe}, or give a `command` with the "
                "Python that has it",
                scope=scope,
            )
        else:
            v.add(f"engine.{e.name}.launch", PASS, f"{exe} found", scope=scope)
        missing = missing_env_refs(e)
        if missing:
            v.add(
                f"engine.{e.name}.env",
                FAIL,
                f"env references unset variables: {', '.join(missing)}",
                "export them before running the suite (values are passed to the server only)",
                scope=scope,
            )
        other = [k for k in launch.uncontrolled if k not in MUST_MATCH]
        if other:
            v.add(
                f"engine.{e.name}.settings",
                WARN,
                f"no {e.preset or 'command'} flag for {', '.join(other)}: not applied",
                "pass the engine's own flag in `args`, or drop the setting",
                scope=INFO,
            )


def check_install(cfg: SuiteConfig, e: EngineConfig, v: Validation) -> bool:
    """An engine with an ``install`` spec: its venv is complete, and what is installed there
    (asked of the venv's own Python, not the record) matches the pinned versions."""
    from sonic.suite.install import canonical_name, installed, pinned_version, venv_bin, venv_dir
    from sonic.suite.provision import engine_versions

    spec = e.install
    assert spec is not None
    scope = engine_scope(e.name)
    venv = venv_dir(spec)
    fix = f"sonic suite setup {cfg.path}" + (f" --engines {e.name}" if len(cfg.engines) > 1 else "")
    if installed(spec) is None:
        v.add(
            f"engine.{e.name}.launch",
            FAIL,
            f"not installed: no complete virtualenv for {' '.join(spec.packages)} at {venv}",
            f"run `{fix}`",
            scope=scope,
        )
        return False
    preset = preset_of(e)
    extra = preset.version_packages if preset else ()
    names = spec.top_level + [n for n in extra if n not in spec.top_level]
    try:
        versions = engine_versions(venv, names, e.name)
    except SonicError as exc:
        v.add(f"engine.{e.name}.launch", FAIL, str(exc), f"run `{fix} --force`", scope=scope)
        return False
    wrong = []
    for req in list(spec.packages) + list(spec.overrides.values()):
        want, name = pinned_version(req), canonical_name(req)
        if versions.get(name) is None or (want is not None and versions[name] != want):
            wrong.append(f"{name} {versions.get(name) or 'missing'} (pinned {want or req})")
    exe = launch_for(cfg, e, e.port or 8000).argv[0]
    shown = ", ".join(f"{k} {val}" for k, val in versions.items() if val)
    if wrong:
        v.add(
            f"engine.{e.name}.launch",
            FAIL,
            f"the venv at {venv} has {'; '.join(wrong)}",
            f"run `{fix} --force`",
            {"versions": versions},
            scope=scope,
        )
        return False
    if not _executable_ok(exe):
        v.add(
            f"engine.{e.name}.launch",
            FAIL,
            f"{exe}: not in the engine's venv ({shown})",
            f"run `{fix} --force`",
            scope=scope,
        )
        return False
    v.add(
        f"engine.{e.name}.launch",
        PASS,
        f"{shown} in {venv_bin(venv).parent}",
        details={"versions": versions, "venv": str(venv), "executable": exe},
        scope=scope,
    )
    return True


# ---------------------------------------------------------------- fairness: settings


def _setting_view(e: EngineConfig, key: str) -> tuple[str, Any]:
    """(state, value) of a must-match setting: set / uncontrolled / irrelevant / default."""
    preset = preset_of(e)
    value = getattr(e.settings, key)
    if e.external:
        return ("external", value)
    if preset is not None and key in preset.irrelevant and not preset.controls(key):
        return ("irrelevant", None)
    if value is None:
        return ("default", None)
    if preset is None or not preset.controls(key):
        return ("uncontrolled", value)
    if key == "dtype":
        value = canonical_dtype(str(value))
    return ("set", value)


def check_settings(cfg: SuiteConfig, v: Validation) -> None:
    """dtype, max model length, max sequences and prefix caching must match between engines."""
    if len(cfg.engines) < 2:
        return
    for key in MUST_MATCH:
        views = {e.name: _setting_view(e, key) for e in cfg.engines}
        relevant = {n: sv for n, sv in views.items() if sv[0] != "irrelevant"}
        if len(relevant) < 2:
            continue
        details = {n: {"state": s, "value": val} for n, (s, val) in relevant.items()}
        values = {n: val for n, (s, val) in relevant.items() if s in ("set", "uncontrolled")}
        states = {s for s, _ in relevant.values()}
        if len(set(map(repr, values.values()))) > 1:
            shown = ", ".join(f"{n}={val}" for n, val in values.items())
            v.add(
                f"settings.{key}",
                FAIL,
                f"engines are configured differently: {shown}",
                f"set the same {key} for every engine (in [settings] or each engine's settings)",
                details,
                scope=FAIRNESS,
            )
        elif states & {"default", "uncontrolled", "external"}:
            loose = [n for n, (s, _) in relevant.items() if s != "set"]
            why = {
                "default": "left at its default",
                "uncontrolled": "set but its preset has no flag for it",
                "external": "an external server (settings unknown)",
            }
            parts = [f"{n}: {why[relevant[n][0]]}" for n in loose]
            v.add(
                f"settings.{key}",
                WARN,
                f"{key} not controlled for every engine ({'; '.join(parts)})",
                f"set {key} in [settings] (and pass the engine's flag in args where the preset "
                "has none) so every engine runs with the same value",
                details,
                scope=FAIRNESS,
            )
        else:
            v.add(
                f"settings.{key}",
                PASS,
                f"every engine runs with {key} = {next(iter(values.values()))}",
                details=details,
                scope=FAIRNESS,
            )


# ---------------------------------------------------------------- workloads and client fairness


def prepare(
    cfg: SuiteConfig,
    plans: list[P.ScenarioPlan],
    v: Validation,
    workloads: Workloads,
) -> dict[tuple[str, str], Prepared]:
    """Parse every engine × scenario's flags and load its workload; check they are identical."""
    prepared: dict[tuple[str, str], Prepared] = {}
    for p in plans:
        per_engine: dict[str, Prepared] = {}
        errors: dict[str, list[str]] = {}  # message -> engines
        rate, conc = p.first_point()
        for e in cfg.engines:
            flags = P.run_flags(
                cfg,
                e,
                p,
                url=_PLACEHOLDER_URL,
                model=request_model(e),
                request_rate=rate,
                max_concurrency=conc,
            )
            if not P.tokenizer_for(cfg, e):
                raise SonicError(
                    f"engine {e.name!r}: no tokenizer (set tokenizer in [suite] or the engine)"
                )
            args = P.parse_flags(e, p, flags)
            try:
                wl = workloads.get(args)
            except SonicError as exc:
                errors.setdefault(str(exc), []).append(e.name)
                wl = None
            per_engine[e.name] = Prepared(e.name, p.name, args, wl)
            prepared[(e.name, p.name)] = per_engine[e.name]
        if errors:
            v.add(
                f"workload.{p.name}",
                FAIL,
                "; ".join(f"{', '.join(names)}: {msg}" for msg, names in errors.items()),
                "fix the dataset or tokenizer setting of this scenario",
                scope=SUITE,
            )
        if any(x.workload is None for x in per_engine.values()):
            continue
        _check_workload_identity(p, per_engine, v)
        _check_client_fairness(p, per_engine, v)
    _check_sampling_defaults(prepared, v)
    return prepared


def _check_workload_identity(p: P.ScenarioPlan, per: dict[str, Prepared], v: Validation) -> None:
    fps = {n: x.workload.fingerprint for n, x in per.items() if x.workload is not None}
    n = len(next(iter(per.values())).workload.samples)  # type: ignore[union-attr]
    if len(set(fps.values())) == 1:
        v.add(
            f"workload.{p.name}",
            PASS,
            f"{n} prompts ({p.scenario.dataset}), identical for every engine "
            f"(sha256 {next(iter(fps.values()))[:12]}…)",
            details={"fingerprints": fps, "num_prompts": n},
            scope=FAIRNESS,
        )
    else:
        v.add(
            f"workload.{p.name}",
            FAIL,
            "engines would get different prompts: "
            + ", ".join(f"{k}={fp[:12]}" for k, fp in fps.items()),
            "use the same tokenizer, compat and dataset options for every engine",
            {"fingerprints": fps},
            scope=FAIRNESS,
        )


def client_signature(args: Any, wl: Workload) -> dict[str, Any]:
    """What decides a request besides its prompt, per field, for comparison across engines."""
    body = args.static_body()
    sampling = {k: val for k, val in body.items() if k not in ("ignore_eos", "stream_options")}
    rules = args.dialect.describe()
    return {
        "rules": {k: rules[k] for k in sorted(rules)},
        "api": args.target.api,
        "tokenizer": args.target.tokenizer,
        "ignore_eos": args.sampling.ignore_eos,
        "sampling": sampling,
        "max_tokens": wl.max_tokens_summary(),
        "seed": args.dataset.seed,
        "history": args.traffic.history,
    }


_FIELD_TEXT = {
    "rules": ("token-count and timing rules (compat) differ", "use one compat for every engine"),
    "api": ("engines are asked through different APIs", "use the same endpoint kind everywhere"),
    "tokenizer": ("engines use different tokenizers", "use one tokenizer for every engine"),
    "ignore_eos": ("ignore_eos differs", "set ignore_eos once, for the scenario"),
    "sampling": ("sampling settings differ", "set sampling once, for the scenario or suite"),
    "max_tokens": (
        "engines are asked for different output lengths",
        "set output_len / max_output_len for the scenario, not per engine",
    ),
    "seed": ("seeds differ", "one seed for the whole suite"),
    "history": (
        "sessions carry different histories (--history dataset vs live)",
        "use one history mode for every engine",
    ),
}


def _check_client_fairness(p: P.ScenarioPlan, per: dict[str, Prepared], v: Validation) -> None:
    if len(per) < 2:
        return
    sigs = {n: client_signature(x.args, x.workload) for n, x in per.items() if x.workload}
    bad = []
    for fld, (what, fix) in _FIELD_TEXT.items():
        values = {n: s[fld] for n, s in sigs.items()}
        if len({repr(val) for val in values.values()}) > 1:
            bad.append(fld)
            v.add(
                f"fairness.{p.name}.{fld}",
                FAIL,
                f"{what}: " + "; ".join(f"{n}: {_short(fld, val)}" for n, val in values.items()),
                fix,
                {"values": values},
                scope=FAIRNESS,
            )
    if not bad:
        v.add(
            f"fairness.{p.name}.client",
            PASS,
            "every engine gets the same rules, API, tokenizer, sampling and output lengths",
            details={"signature": next(iter(sigs.values()))},
            scope=FAIRNESS,
        )


def _short(fld: str, value: Any) -> str:
    if fld == "max_tokens":
        return f"{value['total']} tokens in all, at most {value['max']}"
    if fld == "rules":
        return f"{value.get('compat')} (token count {value.get('token_count')})"
    text = repr(value)
    return text if len(text) < 80 else text[:77] + "..."


def _check_sampling_defaults(prepared: dict[tuple[str, str], Prepared], v: Validation) -> None:
    engines = {k[0] for k in prepared}
    if len(engines) < 2:
        return
    loose = sorted({k[1] for k, x in prepared.items() if "temperature" not in x.args.static_body()})
    if loose:
        v.add(
            "settings.sampling_defaults",
            WARN,
            f"scenarios {', '.join(loose)} send no temperature: each engine uses its own default "
            "(vLLM takes it from the model's generation_config.json)",
            "set temperature (e.g. 0.0) in [suite] or the scenario",
            scope=FAIRNESS,
        )
    else:
        v.add(
            "settings.sampling_defaults",
            PASS,
            "every request carries its sampling settings (no engine defaults apply)",
            scope=FAIRNESS,
        )


# ---------------------------------------------------------------- client self-check


def self_check(
    cfg: SuiteConfig,
    plans: list[P.ScenarioPlan],
    prepared: dict[tuple[str, str], Prepared],
    v: Validation,
) -> None:
    """Can this machine generate the load? Send the heaviest scenario's prompts at its highest
    rate to an embedded exact-mode ``sonic sim`` and report the client's dispatch lag."""
    from sonic.suite.selfcheck import run_self_check

    target = _heaviest(plans)
    if target is None:
        return
    p, rate, conc = target
    x = next((x for k, x in prepared.items() if k[1] == p.name and x.workload), None)
    if x is None:
        return
    try:
        result = run_self_check(x.args, x.workload.samples, rate, conc)
    except (SonicError, ImportError) as exc:
        v.add(
            "client.self_check",
            WARN,
            f"could not run: {exc}",
            "check that sonic's Rust core is installed (make install)",
            scope=INFO,
        )
        return
    v.add(
        "client.self_check",
        result.status,
        result.reason,
        result.fix,
        result.details,
        scope=INFO,
    )


def _heaviest(plans: list[P.ScenarioPlan]) -> tuple[P.ScenarioPlan, float, int | None] | None:
    best = None
    best_key = (-1.0, -1)
    for p in plans:
        if p.is_search:  # its loads are found as it goes; each probe certifies its own client
            continue
        rate = max(p.request_rates)
        conc_values = [c for c in p.max_concurrencies if c is not None]
        conc = max(conc_values) if conc_values else None
        key = (rate if not math.isinf(rate) else 1e9, conc or 0)
        if key > best_key:
            best_key = key
            best = (p, rate, conc if (math.isinf(rate) or conc) else None)
    return best


# ---------------------------------------------------------------- live checks


def check_live(session: Any, v: Validation) -> None:
    """Checks on a server that is up: readiness, served model, reported settings."""
    e: EngineConfig = session.engine
    scope = engine_scope(e.name)
    v.add(
        f"engine.{e.name}.health",
        PASS,
        f"ready in {session.ready_s:.1f} s at {session.url}"
        + (f", version {session.version}" if session.version else ""),
        details={"version": session.version, "simulated": session.simulated},
        scope=scope,
    )
    ids = session.models.ids if session.models else []
    model = session.request_model()
    if model and ids and model not in ids:
        v.add(
            f"engine.{e.name}.models",
            FAIL,
            f"requests would name model {model!r} but the server serves {ids}",
            f"set engines.{e.name}.served_model_name to one of {ids}",
            {"served": ids},
            scope=scope,
        )
    else:
        mml = session.reported.get("max_model_len")
        v.add(
            f"engine.{e.name}.models",
            PASS,
            f"serves {', '.join(ids) or '(no id)'}"
            + (f" with max_model_len {mml}" if mml is not None else ""),
            details={"served": ids, "reported": session.reported},
            scope=scope,
        )
    preset = preset_of(e)
    if preset is not None and preset.metrics_port_env and session.metrics_url:
        from sonic.suite import probes

        r = probes.request(session.metrics_url, timeout=5.0)
        v.add(
            f"engine.{e.name}.metrics",
            PASS if r.ok else WARN,
            f"Prometheus metrics at {session.metrics_url}"
            + ("" if r.ok else f" do not answer ({r.error or r.status})"),
            None if r.ok else f"check {preset.metrics_port_env} and the engine's log",
            scope=INFO,
        )
    configured = e.settings.max_model_len
    reported = session.reported.get("max_model_len")
    if configured is not None and reported is not None and int(reported) != int(configured):
        v.add(
            f"engine.{e.name}.max_model_len",
            FAIL,
            f"configured max_model_len {configured} but the server reports {reported}",
            "check the engine's flags in its log; the setting did not take effect",
            {"configured": configured, "reported": reported},
            scope=FAIRNESS,
        )


def check_reported(reported: dict[str, dict[str, Any]], v: Validation) -> None:
    """Across engines: the settings the servers report about themselves must agree."""
    values = {n: r.get("max_model_len") for n, r in reported.items()}
    known = {n: x for n, x in values.items() if x is not None}
    if len(known) < 2:
        return
    if len(set(known.values())) > 1:
        v.add(
            "settings.reported.max_model_len",
            FAIL,
            "servers report different max_model_len: "
            + ", ".join(f"{n}={x}" for n, x in known.items()),
            "set max_model_len in [settings] so every engine gets the same value",
            {"reported": known},
            scope=FAIRNESS,
        )
    else:
        v.add(
            "settings.reported.max_model_len",
            PASS,
            f"every server reports max_model_len {next(iter(known.values()))}",
            details={"reported": known},
            scope=FAIRNESS,
        )


def first_divergence(a: str, b: str, context: int = 20) -> str | None:
    """None when equal, else where two answers part: ``at char 12: '…abc' vs '…abd'``."""
    if a == b:
        return None
    n = len(os.path.commonprefix([a, b]))
    start = max(0, n - context)
    lead = "…" if start else ""
    return f"at char {n}: {lead + a[start : n + context]!r} vs {lead + b[start : n + context]!r}"


def probe_engine(session: Any, v: Validation) -> dict[str, Any]:
    """The live probes of an engine that is up: the consistency probe's answer (returned, to
    compare across engines) and whether it honours ``ignore_eos`` (a check of its own)."""
    from sonic.compat.backends import resolve_route
    from sonic.suite import probes

    e: EngineConfig = session.engine
    route = resolve_route(e.backend, e.endpoint)
    model = session.request_model()
    answer = probes.probe(session.url, route.endpoint, route.api, model)
    eos = probes.probe(
        session.url,
        route.endpoint,
        route.api,
        model,
        prompt=probes.EOS_PROBE_PROMPT,
        ignore_eos=True,
    )
    check_ignore_eos(e.name, eos, v)
    return answer.as_dict()


def check_ignore_eos(name: str, answer: Any, v: Validation) -> None:
    """A short answer with ignore_eos sent: the engine stops at EOS anyway, so runs that
    send ignore_eos would do less work on it than the workload asks."""
    want, answer_tokens = PROBE_MAX_TOKENS, answer.completion_tokens
    check = f"engine.{name}.ignore_eos"
    if not answer.ok or answer_tokens is None:
        why = answer.error or "no usage.completion_tokens in the answer"
        v.add(check, WARN, f"could not tell whether ignore_eos is honoured ({why})", scope=INFO)
    elif answer_tokens < want:
        v.add(
            check,
            WARN,
            f"ignore_eos is not honoured: a short answer stopped at {answer_tokens} of {want} "
            "tokens; runs that send ignore_eos do less work on this engine than asked",
            "enable ignore_eos on the server (or leave it out of every engine's runs)",
            {"completion_tokens": answer_tokens, "max_tokens": want, "text": answer.text},
            scope=engine_scope(name),
        )
    else:
        v.add(check, PASS, f"ignore_eos honoured ({answer_tokens} of {want} tokens)", scope=INFO)


def check_consistency(answers: dict[str, dict[str, Any]], v: Validation) -> None:
    """The same greedy prompt to each engine: did all answer, and how alike are the answers?"""
    if not answers:
        return
    failed = {n: a.get("error") for n, a in answers.items() if not a.get("ok")}
    details: dict[str, Any] = {"answers": answers}
    if failed:
        v.add(
            "consistency.probe",
            FAIL,
            "no answer from " + ", ".join(f"{n} ({err})" for n, err in failed.items()),
            "look at the engine's log; the runs will likely fail the same way",
            details,
            scope=INFO,
        )
        return
    if len(answers) < 2:
        return
    names = list(answers)
    texts = [answers[n]["text"] for n in names]
    tokens = {n: answers[n].get("completion_tokens") for n in names}
    base = texts[0]
    similarity = {
        n: round(difflib.SequenceMatcher(None, base, t).ratio(), 3)
        for n, t in zip(names[1:], texts[1:])
    }
    prefix = {n: len(os.path.commonprefix([base, t])) for n, t in zip(names[1:], texts[1:])}
    divergence = {n: first_divergence(base, t) for n, t in zip(names[1:], texts[1:])}
    details.update(
        {
            "similarity_to_" + names[0]: similarity,
            "common_prefix_chars": prefix,
            "first_divergence": divergence,
        }
    )
    identical = all(t == base for t in texts)
    shown = ", ".join(f"{n}: {tokens[n]} tokens" for n in names)
    if identical:
        v.add(
            "consistency.probe",
            PASS,
            f"identical greedy answers ({shown})",
            details=details,
            scope=INFO,
        )
    else:
        sim = ", ".join(f"{n} {s:.0%}" for n, s in similarity.items())
        where = "; ".join(f"{n} {d}" for n, d in divergence.items() if d)
        v.add(
            "consistency.probe",
            WARN,
            f"greedy answers differ (similarity to {names[0]}: {sim}; {shown}); first "
            f"divergence: {where}",
            "expected for different models or numerics; for the same model and dtype, check "
            "that both engines load the same weights and chat template",
            details,
            scope=INFO,
        )


# ---------------------------------------------------------------- the whole static pass


def static_checks(
    cfg: SuiteConfig,
    plans: list[P.ScenarioPlan],
    v: Validation,
    workloads: Workloads,
    *,
    with_self_check: bool = True,
) -> dict[tuple[str, str], Prepared]:
    v.add(
        "config",
        PASS,
        f"{len(cfg.engines)} engines ({', '.join(cfg.engine_names)}), {len(plans)} scenarios",
        details={"path": str(cfg.path)},
    )
    check_environment(cfg, v)
    check_engines(cfg, v)
    check_settings(cfg, v)
    prepared = prepare(cfg, plans, v, workloads)
    if with_self_check and not v.failures(SUITE):
        self_check(cfg, plans, prepared, v)
    return prepared


def exit_code(v: Validation) -> int:
    """0: usable (warnings allowed); 1: something failed that blocks or skips an engine."""
    if v.blocking():
        return 1
    if any(c.status == FAIL and c.scope.startswith("engine:") for c in v.checks):
        return 1
    return 0
