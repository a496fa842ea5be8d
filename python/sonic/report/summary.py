"""``summary.md``: what was run, whether it was fair, and who is faster where, in Markdown.

Sections: a simulated-engine notice, the fairness findings (first when anything failed or
warned), the setup from the manifest, the winners, one comparison per scenario and point, and
the runs that did not produce a full result.
"""

from __future__ import annotations

import json
from typing import Any

from sonic.report import fmt
from sonic.report.model import SIMULATED_TAG, ReportData
from sonic.report.stats import COMPARED_METRICS, at_point, points, scenario_verdicts, usable


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
    )


def fairness_lines(data: ReportData) -> list[str]:
    lines = ["## Fairness", ""]
    if data.validation is None:
        return lines + [
            "> **Fairness was not checked**: this directory has no validation.json.",
            "",
        ]
    problems = data.fairness_problems()
    n_fail = sum(1 for c in problems if c.get("status") == "fail")
    n_warn = len(problems) - n_fail
    if data.unfair():
        allowed = " (run with --allow-unfair)" if data.validation.get("allow_unfair") else ""
        lines += [
            f"> **⚠ UNFAIR COMPARISON{allowed}: {n_fail} check(s) failed, {n_warn} warned.** "
            "The differences below may come from unequal conditions, not from the engines.",
            "",
        ]
    elif n_warn:
        lines += [f"> **⚠ {n_warn} fairness check(s) warned.** Read them before the results.", ""]
    else:
        lines += [f"All {len(data.checks())} validation checks passed.", ""]
    rows = [
        [c.get("status", "?").upper(), c.get("name", "?"), c.get("reason", ""), c.get("fix", "")]
        for c in (problems or data.checks())
    ]
    if rows:
        lines += table(["status", "check", "reason", "fix"], rows) + [""]
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
        f"({ratio}, {fmt.significance(w['significant'])})"
    )


def winner_lines(data: ReportData) -> list[str]:
    lines = ["## Winners", ""]
    verdicts = scenario_verdicts(data.winners)
    if not verdicts:
        return lines + ["No point was run by two or more engines: nothing to compare.", ""]
    lines += [
        "Per scenario and metric, each request rate on its own (rates are never averaged). "
        "The percentage is how much better the winner is than the runner-up at that point.",
        "",
    ]
    rows = []
    for v in verdicts:
        if v["state"] == "consistent":
            overall = (
                f"{data.label(v['overall'])} (significant at {v['significant_points']} of "
                f"{len(v['points'])} points)"
            )
        else:
            overall = v["state"]
        per_point = "; ".join(
            f"{fmt.point(p['request_rate'], p['max_concurrency'])}: {verdict_text(data, p)}"
            for p in v["points"]
        )
        rows.append([v["scenario"], metric_label(data, v["metric"]), overall, per_point])
    return lines + table(["scenario", "metric", "better", "per point"], rows) + [""]


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
                fmt.ratio(r.ratio),
                fmt.ci(r.ci_low, r.ci_high, fmt.ratio) or fmt.NA,
                r.method,
                fmt.significance(r.significant, r.method),
            ]
        )
    return rows


COMPARISON_HEADERS = ["metric", "pair (B / A)", "ratio", "95% CI", "CI from", "difference"]


def scenario_lines(data: ReportData) -> list[str]:
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
    if not lines:
        lines = ["## Results", "", "No run finished with results yet.", ""]
    return lines


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


def render(data: ReportData) -> str:
    lines = [f"# {data.title}", ""]
    if data.any_simulated:
        lines += [f"> {simulated_notice(data)}", ""]
    lines += [status_line(data), ""]
    lines += fairness_lines(data)
    lines += setup_lines(data)
    lines += winner_lines(data)
    lines += scenario_lines(data)
    lines += problem_lines(data)
    lines += method_lines(data)
    return "\n".join(lines).rstrip() + "\n"


def manifest_json(data: ReportData) -> str:
    return json.dumps(data.manifest, indent=2, sort_keys=False)
