"""``summary.md``: the answer first (who is better where, by how much, how sure), in Markdown.

Order, the same as ``report.html``: title, a one-line simulated / unfair notice, the verdict
(one paragraph on the headline metrics, then every scenario × metric with its CI), the
latency–throughput plots, the per-point tables, each run's validity verdict, the validation
(failures and warnings first, passing checks folded), then provenance: the setup, runs with
problems and the method.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from sonic.report import fmt
from sonic.report.model import SIMULATED_TAG, ReportData
from sonic.report.stats import COMPARED_METRICS, at_point, points, scenario_verdicts, usable

if TYPE_CHECKING:  # pragma: no cover
    from sonic.report.plots import Plot

# The metrics the opening paragraph speaks of; the verdict table below it has all of them.
HEADLINE_METRICS = ("output_throughput", "p99_ttft_ms", "p99_tpot_ms")


def cell(v: Any) -> str:
    """A Markdown table cell: one line, pipes escaped."""
    text = "" if v is None else str(v)
    return " ".join(text.split()).replace("|", "\\|")


def table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return lines


def simulated_notice(data: ReportData, *, bold: bool = True) -> str:
    names = ", ".join(sorted(data.simulated))
    tag = f"**{SIMULATED_TAG}**" if bold else SIMULATED_TAG
    return (
        f"{tag} Results from {names} come from sonic's simulated engine: they "
        "demonstrate the tool and are not measurements of a real serving engine."
    )


def status_line(data: ReportData) -> str:
    m = data.manifest
    counts = data.run_counts()
    parts = ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) or "none"
    return (
        f"Suite status: **{m.get('status', 'unknown')}** · started {m.get('started_at', '?')} · "
        f"finished {m.get('finished_at') or '—'} · runs: {sum(counts.values())} ({parts})"
        + (f" · capacity searches: {len(data.capacities)}" if data.capacities else "")
    )


def unfair_notice(data: ReportData) -> str | None:
    """One line for the top of the report when fairness was not checked or a check failed or
    warned (None otherwise)."""
    if data.validation is None:
        return "⚠ Fairness was not checked: this directory has no validation.json."
    problems = data.fairness_problems()
    failed = [str(c.get("name", "?")) for c in problems if c.get("status") == "fail"]
    warned = [str(c.get("name", "?")) for c in problems if c.get("status") != "fail"]
    said = " ".join(
        f"{', '.join(names)} {word}."
        for names, word in ((failed, "failed"), (warned, "warned"))
        if names
    )
    if data.unfair():
        allowed = ", run with --allow-unfair" if data.validation.get("allow_unfair") else ""
        return (
            f"⚠ UNFAIR COMPARISON{allowed}: {said or 'validation says the run was unfair.'} "
            "The differences below may come from unequal conditions, not from the engines. "
            "See Validation."
        )
    if warned:
        return f"⚠ Validation warnings: {said} See Validation."
    return None


def check_counts(data: ReportData) -> tuple[int, int, int]:
    """(failed, warned, passed) validation checks."""
    problems = data.fairness_problems()
    n_fail = sum(1 for c in problems if c.get("status") == "fail")
    return n_fail, len(problems) - n_fail, len(data.checks()) - len(problems)


def passing_checks(data: ReportData) -> list[dict[str, Any]]:
    """Validation checks that neither failed nor warned."""
    return [c for c in data.checks() if c.get("status") not in ("fail", "warn")]


def fairness_lines(data: ReportData) -> list[str]:
    lines = ["## Validation", ""]
    if data.validation is None:
        return lines + [
            "> **Fairness was not checked**: this directory has no validation.json.",
            "",
        ]
    n_fail, n_warn, n_pass = check_counts(data)
    if data.unfair():
        lines += [
            f"> **⚠ UNFAIR COMPARISON: {n_fail} check(s) failed, {n_warn} warned.** "
            "The differences above may come from unequal conditions, not from the engines.",
            "",
        ]
    elif n_warn:
        lines += [f"> **⚠ {n_warn} fairness check(s) warned.**", ""]
    else:
        lines += [f"All {n_pass} validation checks passed.", ""]
    problems = data.fairness_problems()
    if problems:
        rows = [
            [
                str(c.get("status", "?")).upper(),
                c.get("name", "?"),
                c.get("reason", ""),
                c.get("fix", ""),
                "; ".join(fmt.details_lines(c.get("details"))),
            ]
            for c in problems
        ]
        lines += table(["status", "check", "reason", "fix", "details"], rows) + [""]
    passing = passing_checks(data)
    if passing:
        rows = [
            [str(c.get("status", "?")).upper(), c.get("name", "?"), c.get("reason", "")]
            for c in passing
        ]
        lines += [
            f"<details><summary>{len(passing)} passing check(s)</summary>",
            "",
            *table(["status", "check", "reason"], rows),
            "",
            "</details>",
            "",
        ]
    return lines


def gpu_text(manifest: dict[str, Any]) -> str:
    gpus = manifest.get("gpu") or []
    return (
        "; ".join(
            f"{g.get('index', '?')}: {g.get('name', '?')} ({g.get('memory_total_mib', '?')} MiB)"
            for g in gpus
            if isinstance(g, dict)
        )
        or "none recorded"
    )


def setup_lines(data: ReportData) -> list[str]:
    m = data.manifest
    host = m.get("host") or {}
    lines = ["## What was run", ""]
    lines += [
        f"- Suite: {m.get('suite', data.root.name)} (config {m.get('config_path', '?')}, "
        f"hash {str(m.get('config_hash', '?'))[:12]}){' — quick mode' if m.get('quick') else ''}",
        f"- sonic {m.get('sonic_version', '?')}, seed {m.get('seed', '?')} "
        "(every engine got the same prompts and schedule)",
        f"- Host: {host.get('hostname', '?')}, {host.get('platform', '?')}, "
        f"Python {host.get('python', '?')}, {host.get('cpu_count', '?')} CPUs",
        f"- GPU: {gpu_text(m)}",
        "",
    ]
    rows = []
    for name in data.engines:
        e = (m.get("engines") or {}).get(name) or {}
        rows.append(
            [
                data.label(name),
                e.get("version") or "?",
                e.get("preset") or ("external" if e.get("external") else "custom"),
                e.get("server_args") or "",
                e.get("status", "?") + (f": {e['error']}" if e.get("error") else ""),
            ]
        )
    lines += table(["engine", "version", "preset", "server args", "status"], rows) + [""]
    lines += table(["scenario", "dataset", "points", "repeats"], scenario_rows(data)) + [""]
    return lines


def scenario_rows(data: ReportData) -> list[list[str]]:
    df = data.results
    rows = []
    for scenario in dict.fromkeys(df["scenario"]):
        sub = df[df["scenario"] == scenario]
        pts = [fmt.point(r, c) for s, r, c in points(sub)]
        datasets = ", ".join(sorted({str(d) for d in sub["dataset"] if isinstance(d, str)}))
        rows.append([scenario, datasets or "?", "; ".join(pts), str(sub["repeat"].nunique())])
    return rows


def metric_label(data: ReportData, column: str) -> str:
    m = data.metric(column)
    return f"{m.label} ({m.unit})"


def verdict_text(data: ReportData, w: dict[str, Any]) -> str:
    """``alpha [SIMULATED] 23.4% lower (ratio 0.766 [0.70, 0.84], significant)``."""
    m = data.metric(w["metric"])
    interval = fmt.ci(w["ci_low"], w["ci_high"], fmt.ratio)
    ratio = f"ratio {fmt.ratio(w['ratio'])}" + (f" {interval}" if interval else "")
    return (
        f"{data.label(w['winner'])} {fmt.pct(w['difference_pct'])} {m.better_word} "
        f"({ratio}, {significance(w)})"
    )


def significance(row: dict[str, Any], method: str | None = None, *, short: bool = True) -> str:
    """``significant`` / ``not significant`` / ``untested``, or why it may not be compared:
    ``not comparable (alpha: over_saturated)`` when a run is invalid."""
    invalid = row.get("invalid")
    if isinstance(invalid, str) and invalid:
        return f"not comparable ({invalid})"
    return fmt.significance(row.get("significant"), method, short=short)


def overall_text(data: ReportData, v: dict[str, Any]) -> str:
    """The verdict of one scenario × metric, e.g. ``alpha lower at 2 of 2 point(s),
    significant`` or ``no significant difference``."""
    n = len(v["points"])
    if v["state"] == "consistent":
        m = data.metric(v["metric"])
        return (
            f"{data.label(v['overall'])} {m.better_word} at {v['significant_points']} of {n} "
            "point(s), significant"
        )
    if v["state"] == "mixed":
        return "mixed: different engines are significantly better at different points"
    if v["state"] == "untested":
        return "untested (one repeat: no confidence interval)"
    if v["state"] == "invalid":
        return f"not comparable: an invalid run at {'every' if n > 1 else 'the'} point"
    return f"no significant difference at {n} point(s)"


def _ratio_words(p: dict[str, Any]) -> str:
    interval = fmt.ci(p["ci_low"], p["ci_high"], fmt.ratio)
    return f"ratio {fmt.ratio(p['ratio'])}, " + (f"95% CI {interval}" if interval else "no CI")


def point_clause(
    data: ReportData, v: dict[str, Any], p: dict[str, Any], *, point_first: bool = False
) -> str:
    """One point of a verdict: ``55.6% at rate 1 req/s (ratio 0.444, 95% CI [0.442, 0.447])``
    (``point_first``: ``rate 1 req/s: 55.6% (…)``), naming the engine and its direction unless
    they are the verdict's own, and saying when a point is not significant although the
    verdict names a winner."""
    m = data.metric(v["metric"])
    where = fmt.point(p["request_rate"], p["max_concurrency"])
    ratio = _ratio_words(p)
    body = fmt.pct(p["difference_pct"])
    if not (v["state"] == "consistent" and p["winner"] == v["overall"]):
        body = f"{data.label(p['winner'])} {body} {m.better_word}"
    if p.get("invalid") or (v["state"] in ("consistent", "mixed") and p["significant"] is not True):
        ratio += ", " + significance(p)
    if point_first:
        return f"{where}: {body} ({ratio})"
    return f"{body} at {where} ({ratio})"


def answer(data: ReportData) -> list[tuple[str, str]]:
    """The report's opening paragraph as (lead, sentence) pairs: per scenario, each headline
    metric's verdict with every point's margin and CI (all metrics when none of the headline
    ones was compared). Empty when no point was run by two or more engines."""
    verdicts = scenario_verdicts(data.winners)
    shown = [v for v in verdicts if v["metric"] in HEADLINE_METRICS] or verdicts
    out = []
    for v in shown:
        lead = f"{v['scenario']} · {metric_label(data, v['metric'])}:"
        clauses = "; ".join(point_clause(data, v, p) for p in v["points"])
        sep = "; by mean, " if v["state"] == "untested" else ": "
        out.append((lead, f"{overall_text(data, v)}{sep}{clauses}."))
    # A capacity search's answer is one ratio per engine pair: it leads, as the question
    # "how much load within the SLO" is the one the search scenario asked.
    capacity = [
        (f"{r.scenario} · capacity:", r.text(data.label) + ".") for r in data.capacity_ratios
    ]
    return capacity + out


NOTHING_TO_COMPARE = (
    "No point was run, and no capacity found, by two or more engines: nothing to compare."
)
VERDICT_NOTE = (
    "Each request rate is compared on its own (rates are never averaged). The percentage is "
    "how much better the winner is than the runner-up at that point; the ratio is winner / "
    "runner-up with its bootstrap 95% confidence interval, and a difference is significant when "
    "that interval excludes 1."
)
VERDICT_HEADERS = ["scenario", "metric", "verdict", "per point"]


def verdict_rows(data: ReportData) -> list[tuple[str, str, str, list[str]]]:
    """Every scenario × metric: (scenario, metric, verdict, one text per point)."""
    return [
        (
            v["scenario"],
            metric_label(data, v["metric"]),
            overall_text(data, v),
            [point_clause(data, v, p, point_first=True) for p in v["points"]],
        )
        for v in scenario_verdicts(data.winners)
    ]


def verdict_lines(data: ReportData) -> list[str]:
    lines = ["## Verdict", ""]
    said = answer(data)
    if not said:
        return lines + [NOTHING_TO_COMPARE, ""]
    lines += [f"- **{lead}** {text}" for lead, text in said] + [""]
    rows = [[s, m, o, "; ".join(pts)] for s, m, o, pts in verdict_rows(data)]
    if not rows:  # capacity answers only
        return lines
    lines += table(VERDICT_HEADERS, rows) + [""]
    return lines + [VERDICT_NOTE, ""]


def plot_lines(plots: list[Plot]) -> list[str]:
    """Each figure as its own Markdown paragraph (plots/ sits beside summary.md)."""
    return [line for p in plots for line in (f"![{p.title}](plots/{p.name})", "")]


def curve_lines(plots: dict[str, list[Plot]]) -> list[str]:
    curves = [p for ps in plots.values() for p in ps if p.kind == "curves"]
    if not curves:
        return []
    return ["## Latency vs throughput", "", *plot_lines(curves)]


def point_value_rows(data: ReportData, point) -> tuple[list[str], list[list[str]]]:
    """Metric rows × engine columns (mean [95% CI] over repeats) and the best engine."""
    summ = at_point(data.summary, point)
    engines = [e for e in data.engines if (summ["engine"] == e).any()]
    win = at_point(data.winners, point) if not data.winners.empty else data.winners
    headers = ["metric", *[data.label(e) for e in engines], "better"]
    rows = []
    for m in COMPARED_METRICS:
        vals = []
        for e in engines:
            r = summ[(summ["engine"] == e) & (summ["metric"] == m.column)]
            vals.append(
                fmt.NA if r.empty else fmt.value_ci(*r.iloc[0][["mean", "ci_low", "ci_high"]])
            )
        best = ""
        w = win[win["metric"] == m.column] if not win.empty else win
        if not w.empty:
            best = verdict_text(data, w.iloc[0].to_dict())
        rows.append([metric_label(data, m.column), *vals, best])
    reps = []
    for e in engines:
        r = summ[(summ["engine"] == e) & (summ["metric"] == "completed")]
        n = int(r.iloc[0]["n"]) if not r.empty else 0
        failed = r.iloc[0]["failed"] if not r.empty else 0
        reps.append(f"{n} run(s), {int(failed)} failed requests")
    rows.append(["repeats", *reps, ""])
    return headers, rows


def comparison_rows(data: ReportData, point) -> list[list[str]]:
    comp = at_point(data.comparisons, point)
    rows = []
    for r in comp.itertuples(index=False):
        rows.append(
            [
                metric_label(data, r.metric),
                f"{data.label(r.engine_b)} / {data.label(r.engine_a)}",
                ratio_ci(r.ratio, r.ci_low, r.ci_high),
                r.method,
                significance(r._asdict(), r.method, short=False),
            ]
        )
    return rows


def ratio_ci(ratio: Any, lo: Any, hi: Any) -> str:
    """``0.766 [0.70, 0.84]``: a ratio and its 95% CI in one cell (the CI never stands alone)."""
    interval = fmt.ci(lo, hi, fmt.ratio)
    return f"{fmt.ratio(ratio)} {interval}" if interval else fmt.ratio(ratio)


COMPARISON_HEADERS = ["metric", "pair (B / A)", "ratio [95% CI]", "CI from", "difference"]


def scenario_lines(data: ReportData, plots: dict[str, list[Plot]] | None = None) -> list[str]:
    lines: list[str] = []
    good = usable(data.results)
    for scenario in dict.fromkeys(good["scenario"]):
        lines += [f"## Scenario {scenario}", ""]
        for point in points(good[good["scenario"] == scenario]):
            lines += [f"### {scenario} · {fmt.point(point[1], point[2])}", ""]
            headers, rows = point_value_rows(data, point)
            lines += table(headers, rows) + [""]
            comp = comparison_rows(data, point)
            if comp:
                lines += table(COMPARISON_HEADERS, comp) + [""]
        lines += plot_lines([p for p in (plots or {}).get(scenario, []) if p.kind != "curves"])
    if not lines:
        lines = ["## Results", "", "No run finished with results yet.", ""]
    return lines


VALIDITY_HEADERS = ["engine", "run", "verdict", "reasons"]
VALIDITY_NOTE = (
    "Every run carries a validity verdict (sonic.validity in its result): the offered rate was "
    "reached, the client kept its schedule, the engine was not over-saturated, each percentile "
    "rests on enough requests (p99: 100), warm-up untimed. A difference involving an invalid "
    "run, or a statistic invalid in it, is never called significant."
)


def validity_rows(data: ReportData) -> list[list[str]]:
    """Runs whose verdict is not ``valid``: engine, run, verdict, reason codes."""
    df = data.results
    if "validity" not in df:
        return []
    rows = []
    for r in df.itertuples(index=False):
        if r.validity in ("invalid", "warn"):
            reasons = str(r.validity_reasons or "").replace(",", ", ")
            scoped = str(r.invalid_metrics or "")
            if scoped:
                reasons += f" (invalid: {scoped.replace(',', ', ')})"
            rows.append([data.label(r.engine), r.run_id, str(r.validity).upper(), reasons])
    return rows


def validity_counts(data: ReportData) -> dict[str, int]:
    df = data.results
    if "validity" not in df:
        return {}
    counts: dict[str, int] = {}
    for v in df["validity"]:
        if isinstance(v, str):  # results written before verdicts existed have none
            counts[v] = counts.get(v, 0) + 1
    return counts


def validity_lines(data: ReportData) -> list[str]:
    counts = validity_counts(data)
    if not counts:
        return []
    said = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    lines = ["## Run validity", "", f"Runs: {said}.", ""]
    rows = validity_rows(data)
    if rows:
        lines += table(VALIDITY_HEADERS, rows) + [""]
    return lines + [VALIDITY_NOTE, ""]


def problem_lines(data: ReportData) -> list[str]:
    df = data.results
    bad = df[(df["status"] != "ok") | df["partial"]]
    if bad.empty and not data.warnings:
        return []
    lines = ["## Runs with problems", ""]
    rows = [
        [data.label(r.engine), r.run_id, r.status, r.error or ("partial" if r.partial else "")]
        for r in bad.itertuples(index=False)
    ]
    if rows:
        lines += table(["engine", "run", "status", "error"], rows) + [""]
    lines += [f"- {w}" for w in data.warnings]
    return lines + ([""] if data.warnings else [])


def method_lines(data: ReportData) -> list[str]:
    return [
        "## Method",
        "",
        "Values are means over repeats with a bootstrap 95% confidence interval "
        f"(seed {data.seed}). Ratios are B / A; a difference is significant when the 95% CI "
        "of the ratio excludes 1. With one repeat, latency statistics are bootstrapped over the "
        "run's requests and throughputs are untested. Lower is better for latencies, higher "
        "for throughputs. Values at different request rates are never averaged.",
        "",
    ]


def render(data: ReportData, plots: dict[str, list[Plot]] | None = None) -> str:
    """The summary, answer first: verdict, curves, tables, validation, then provenance."""
    lines = [f"# {data.title}", ""]
    if data.any_simulated:
        lines += [f"> {simulated_notice(data)}", ""]
    notice = unfair_notice(data)
    if notice:
        lines += [f"> **{notice}**", ""]
    lines += [status_line(data), ""]
    lines += verdict_lines(data)
    lines += capacity_lines(data)
    lines += curve_lines(plots or {})
    lines += reuse_lines(data)
    lines += scenario_lines(data, plots)
    lines += validity_lines(data)
    lines += fairness_lines(data)
    lines += setup_lines(data)
    lines += problem_lines(data)
    lines += method_lines(data)
    return "\n".join(lines).rstrip() + "\n"


def capacity_rows(data: ReportData) -> list[list[str]]:
    return [
        [c.scenario, data.label(c.engine), c.text(), c.slo_text, str(c.probes)]
        for c in data.capacities
    ]


CAPACITY_HEADERS = ["Scenario", "Engine", "Capacity [95% CI]", "SLO", "Probes"]


REUSE_HEADERS = [
    "Scenario",
    "Engine",
    "Point",
    "Expected reuse",
    "Engine hit rate",
    "Cached (usage)",
    "TTFT first turn (ms)",
    "TTFT later turns (ms)",
]


def _share(value: Any) -> str:
    return fmt.NA if fmt.is_missing(value) else f"{float(value):.1%}"


def _ms_text(value: Any) -> str:
    return fmt.NA if fmt.is_missing(value) else f"{float(value):.1f}"


def reuse_rows(data: ReportData) -> list[list[str]]:
    """Sessions and trace runs: prefix reuse the workload implies beside what the engine
    measured, and first against later turns' TTFT (one row per run)."""
    df = data.results
    if df is None or df.empty or "expected_prefix_reuse" not in df:
        return []
    df = df[df["expected_prefix_reuse"].notna()]
    rows = []
    for _, r in df.sort_values(["scenario", "engine", "request_rate", "repeat"]).iterrows():
        rows.append(
            [
                str(r["scenario"]),
                data.label(r["engine"]),
                f"{fmt.point(r['request_rate'], r['max_concurrency'])}, rep {int(r['repeat'])}",
                _share(r["expected_prefix_reuse"]),
                _share(r["measured_prefix_cache_hit_rate"]),
                _share(r["reported_cached_prompt_share"]),
                _ms_text(r["first_turn_ttft_ms"]),
                _ms_text(r["later_turns_ttft_ms"]),
            ]
        )
    return rows


REUSE_NOTE = (
    "Expected reuse: the share of prompt tokens in blocks an earlier request of the run already "
    "sent (the ceiling of an unbounded prefix cache). Engine hit rate: its /metrics prefix-cache "
    "counters over the run. Cached (usage): prompt tokens its responses reported as cached."
)


def reuse_lines(data: ReportData) -> list[str]:
    rows = reuse_rows(data)
    if not rows:
        return []
    return ["## Multi-turn and prefix reuse", "", *table(REUSE_HEADERS, rows), "", REUSE_NOTE, ""]


def capacity_lines(data: ReportData) -> list[str]:
    """Capacity searches: each engine's capacity, each pair's ratio, each engine's plot."""
    if not data.capacities:
        return []
    lines = ["## Capacity", "", *table(CAPACITY_HEADERS, capacity_rows(data)), ""]
    lines += [f"- {r.text(data.label)}" for r in data.capacity_ratios]
    lines += [""] if data.capacity_ratios else []
    for c in data.capacities:
        png = c.directory / "search.png"
        if png.is_file():
            rel = png.relative_to(data.root).as_posix()
            lines += [f"![{c.engine} · {c.scenario}]({rel})", ""]
    return lines


def manifest_json(data: ReportData) -> str:
    return json.dumps(data.manifest, indent=2, sort_keys=False)
