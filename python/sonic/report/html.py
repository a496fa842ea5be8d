"""``report.html``: one self-contained file that opens without a network.

It leads with the answer: the title, a one-line simulated / unfair notice, the verdict (a
line per scenario and headline metric, with its CI), the latency–throughput curves, every
scenario × metric's verdict, the per-point tables, the validation (failures and warnings
visible, passing checks folded in a ``<details>``), then provenance (setup, runs, method).
No table cell holds JSON: structured check details go through ``fmt.details_lines``.

Styles are inline, figures are base64 PNG ``data:`` URIs, and the only script is a few inline
lines that mark the body once every image has decoded (the headless-browser test reads it).
Every piece of text from the results directory goes through ``html.escape``.
"""

from __future__ import annotations

import base64
import html
from typing import Any

from sonic.report import fmt, summary
from sonic.report.model import SIMULATED_TAG, ReportData
from sonic.report.plots import Plot, slug
from sonic.report.stats import points, usable

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1200px;padding:1rem 2rem;color:#1d2330;line-height:1.45}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{border-bottom:2px solid #d8dde6;padding-bottom:.2rem;
margin-top:2.2rem}h3{margin-top:1.6rem}
table{border-collapse:collapse;margin:.6rem 0 1rem;font-size:.88rem}
th,td{border:1px solid #d0d5de;padding:.3rem .55rem;text-align:left;vertical-align:top}
th{background:#eef1f6}tr:nth-child(even) td{background:#fafbfc}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.banner{padding:.8rem 1rem;border-radius:6px;margin:1rem 0;font-weight:600}
.sim{background:#fff4d6;border:2px solid #e0a800}
.unfair{background:#fde2e1;border:2px solid #c62828;color:#7f1212}
.warn{background:#fff4d6;border:1px solid #e0a800}
.ok{background:#e6f4ea;border:1px solid #2e7d32}
.tag{display:inline-block;background:#e0a800;color:#000;border-radius:3px;padding:0 .3rem;
font-size:.75rem;font-weight:700;margin-left:.25rem}
.status-fail{color:#b71c1c;font-weight:700}.status-warn{color:#8a6100;font-weight:700}
.status-pass{color:#2e7d32}.muted{color:#5f6b7a}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #d0d5de}
figcaption{font-size:.85rem;color:#5f6b7a}
nav a{margin-right:1rem}pre{background:#f5f7fa;padding:.8rem;overflow:auto;font-size:.8rem}
p.answer{font-size:1rem;line-height:1.6}p.answer b{white-space:nowrap}
tr.group th{background:#dfe5ee;font-size:.92rem}
details{margin:.6rem 0}summary{cursor:pointer;color:#33415c;font-weight:600}
.banner.top{font-weight:600;margin:.6rem 0}
"""

SCRIPT = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-loaded", String(ok.length));
});
"""


def e(v: Any) -> str:
    return html.escape("" if v is None else str(v), quote=True)


def engine_html(data: ReportData, engine: str) -> str:
    tag = f'<span class="tag">{e(SIMULATED_TAG)}</span>' if engine in data.simulated else ""
    return f"{e(engine)}{tag}"


def table(headers: list[str], rows: list[list[Any]], *, cls: str = "", raw: bool = False) -> str:
    """An HTML table; cells are escaped unless ``raw`` (then the caller escaped them)."""
    head = "".join(f"<th>{h if raw else e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{v if raw else e(v)}</td>" for v in row) + "</tr>" for row in rows
    )
    attr = f' class="{e(cls)}"' if cls else ""
    return f"<table{attr}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def img(plot: Plot) -> str:
    b64 = base64.b64encode(plot.png).decode("ascii")
    return (
        f'<figure><img alt="{e(plot.title)}" src="data:image/png;base64,{b64}">'
        f"<figcaption>{e(plot.title)} · plots/{e(plot.name)}</figcaption></figure>"
    )


def _labelled(data: ReportData, text: str) -> str:
    """Escape text, then tag each simulated engine's ``[SIMULATED]`` label visibly."""
    out = e(text)
    return out.replace(e(SIMULATED_TAG), f'<span class="tag">{e(SIMULATED_TAG)}</span>')


def details_cell(details: Any) -> str:
    """A check's structured details as escaped ``key: value`` lines (never JSON)."""
    return "<br>".join(e(line) for line in fmt.details_lines(details))


def _check_row(c: dict[str, Any], *, with_fix: bool = True) -> list[str]:
    status = str(c.get("status", "?"))
    row = [
        f'<span class="status-{e(status)}">{e(status.upper())}</span>',
        e(c.get("name", "?")),
        e(c.get("reason", "")),
    ]
    if with_fix:
        row.append(e(c.get("fix") or ""))
    return row + [details_cell(c.get("details"))]


def fairness_html(data: ReportData) -> str:
    """Validation: failures and warnings first and visible, passing checks folded away."""
    parts = ['<section id="validation"><h2>Validation (fairness)</h2>']
    if data.validation is None:
        parts.append(
            '<div class="banner warn">Fairness was not checked: this directory has no '
            "validation.json.</div>"
        )
        return "".join(parts) + "</section>"
    n_fail, n_warn, n_pass = summary.check_counts(data)
    if data.unfair():
        parts.append(
            f'<div class="banner unfair">⚠ UNFAIR COMPARISON: {n_fail} check(s) failed, '
            f"{n_warn} warned. The differences above may come from unequal conditions, not "
            "from the engines.</div>"
        )
    elif n_warn:
        parts.append(f'<div class="banner warn">⚠ {n_warn} fairness check(s) warned.</div>')
    else:
        parts.append(f'<div class="banner ok">All {n_pass} validation checks passed.</div>')
    problems = data.fairness_problems()
    if problems:
        parts.append(
            table(
                ["status", "check", "reason", "fix", "details"],
                [_check_row(c) for c in problems],
                cls="problems",
                raw=True,
            )
        )
    passing = summary.passing_checks(data)
    if passing:
        parts.append(
            f'<details class="passing"><summary>{len(passing)} passing check(s)</summary>'
            + table(
                ["status", "check", "reason", "details"],
                [_check_row(c, with_fix=False) for c in passing],
                raw=True,
            )
            + "</details>"
        )
    return "".join(parts) + "</section>"


def setup_html(data: ReportData) -> str:
    m = data.manifest
    host = m.get("host") or {}
    rows = [
        ["suite", m.get("suite", data.root.name)],
        ["config", f"{m.get('config_path', '?')} (sha256 {m.get('config_hash', '?')})"],
        ["sonic version", m.get("sonic_version", "?")],
        ["seed", m.get("seed", "?")],
        ["quick mode", m.get("quick", "?")],
        ["status", m.get("status", "unknown")],
        ["started / finished", f"{m.get('started_at', '?')} / {m.get('finished_at') or '—'}"],
        [
            "host",
            f"{host.get('hostname', '?')} · {host.get('platform', '?')} · Python "
            f"{host.get('python', '?')} · {host.get('cpu_count', '?')} CPUs",
        ],
        ["GPU", summary.gpu_text(m)],
    ]
    engines = []
    for name in data.engines:
        en = (m.get("engines") or {}).get(name) or {}
        argv = en.get("argv")
        engines.append(
            [
                engine_html(data, name),
                e(en.get("version") or "?"),
                e(en.get("preset") or ("external" if en.get("external") else "custom")),
                e(en.get("server_args") or ""),
                e(" ".join(map(str, argv)) if isinstance(argv, list) else ""),
                e(en.get("status", "?") + (f": {en['error']}" if en.get("error") else "")),
                e(en.get("log") or ""),
            ]
        )
    return (
        '<section id="setup"><h2>What was run</h2>'
        + table(["field", "value"], rows)
        + "<h3>Engines</h3>"
        + table(
            ["engine", "version", "preset", "server args", "command", "status", "log"],
            engines,
            raw=True,
        )
        + "<h3>Scenarios</h3>"
        + table(["scenario", "dataset", "points", "repeats"], summary.scenario_rows(data))
        + "<details><summary>manifest.json</summary><pre>"
        + e(summary.manifest_json(data))
        + "</pre></details></section>"
    )


def verdict_html(data: ReportData) -> str:
    """The answer: a line per scenario and headline metric (every metric comes after the
    curves, in ``all_metrics_html``)."""
    parts = ['<section id="verdict"><h2>Verdict</h2>']
    said = summary.answer(data)
    if not said:
        parts.append(f"<p>{e(summary.NOTHING_TO_COMPARE)}</p>")
        return "".join(parts) + "</section>"
    parts.append(
        '<p class="answer">'
        + "<br>".join(
            f"<b>{_labelled(data, lead)}</b> {_labelled(data, text)}" for lead, text in said
        )
        + "</p>"
    )
    return "".join(parts) + "</section>"


def capacity_html(data: ReportData) -> str:
    """Capacity searches: the table, each pair's ratio, each engine's search plot."""
    if not data.capacities:
        return ""
    parts = ['<section id="capacity"><h2>Capacity</h2>']
    if data.capacity_ratios:
        parts.append(
            '<p class="answer">'
            + "<br>".join(_labelled(data, r.text(data.label)) for r in data.capacity_ratios)
            + "</p>"
        )
    rows = [[e(x) for x in row] for row in summary.capacity_rows(data)]
    for row, c in zip(rows, data.capacities):
        row[1] = engine_html(data, c.engine)
    parts.append(table(summary.CAPACITY_HEADERS, rows, raw=True))
    for c in data.capacities:
        png = c.directory / "search.png"
        if png.is_file():
            b64 = base64.b64encode(png.read_bytes()).decode("ascii")
            rel = png.relative_to(data.root).as_posix()
            parts.append(
                f'<figure><img alt="{e(c.engine)} search" src="data:image/png;base64,{b64}">'
                f"<figcaption>{engine_html(data, c.engine)} · {e(c.scenario)} · {e(rel)}"
                "</figcaption></figure>"
            )
    return "".join(parts) + "</section>"


def reuse_html(data: ReportData) -> str:
    """Sessions and trace runs: expected against measured prefix reuse, TTFT by turn."""
    rows = summary.reuse_rows(data)
    if not rows:
        return ""
    return (
        '<section id="reuse"><h2>Multi-turn and prefix reuse</h2>'
        + table(summary.REUSE_HEADERS, rows)
        + f"<p>{e(summary.REUSE_NOTE)}</p></section>"
    )


def all_metrics_html(data: ReportData) -> str:
    """Every scenario × metric's verdict, after the curves (the answer above has the headline
    metrics)."""
    if not summary.answer(data):
        return ""
    return (
        '<section id="all-metrics"><h2>Every metric</h2>'
        + verdict_table(data)
        + f'<p class="muted">{e(summary.VERDICT_NOTE)}</p></section>'
    )


def verdict_table(data: ReportData) -> str:
    """Every scenario × metric, a heading row per scenario, a line per point."""
    head = "".join(f"<th>{e(h)}</th>" for h in summary.VERDICT_HEADERS[1:])
    body, current = [], None
    for scenario, metric, verdict, pts in summary.verdict_rows(data):
        if scenario != current:
            current = scenario
            body.append(f'<tr class="group"><th colspan="3">Scenario {e(scenario)}</th></tr>')
        cells = [e(metric), _labelled(data, verdict), "<br>".join(_labelled(data, t) for t in pts)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f'<table class="verdicts"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def curves_html(plots: dict[str, list[Plot]]) -> str:
    """The latency–throughput curves of every scenario, right after the verdict."""
    curves = [p for ps in plots.values() for p in ps if p.kind == "curves"]
    if not curves:
        return ""
    return (
        '<section id="curves"><h2>Latency vs throughput</h2>'
        + "".join(img(p) for p in curves)
        + "</section>"
    )


def scenario_html(data: ReportData, scenario: str, plots: list[Plot]) -> str:
    """The per-point tables of one scenario, then its other figures (curves are up top)."""
    parts = [f'<section id="scenario-{e(slug(scenario))}"><h2>Scenario {e(scenario)}</h2>']
    good = usable(data.results)
    for point in points(good[good["scenario"] == scenario]):
        parts.append(f"<h3>{e(scenario)} · {e(fmt.point(point[1], point[2]))}</h3>")
        headers, rows = summary.point_value_rows(data, point)
        parts.append(
            table(
                [_labelled(data, h) for h in headers],
                [[_labelled(data, v) for v in r] for r in rows],
                cls="values",
                raw=True,
            )
        )
        comp = summary.comparison_rows(data, point)
        if comp:
            parts.append(
                table(
                    summary.COMPARISON_HEADERS,
                    [[_labelled(data, v) for v in r] for r in comp],
                    cls="comparison",
                    raw=True,
                )
            )
    parts += [img(p) for p in plots if p.kind != "curves"]
    return "".join(parts) + "</section>"


def runs_html(data: ReportData) -> str:
    rows = []
    for r in data.results.itertuples(index=False):
        status = r.status + (" (partial)" if r.partial and r.status == "ok" else "")
        rows.append(
            [
                engine_html(data, r.engine),
                e(r.run_id),
                e(r.dialect or ""),
                e(status),
                e(fmt.count(r.completed)),
                e(fmt.count(r.failed)),
                e(r.error or ""),
            ]
        )
    warn = "".join(f"<li>{e(w)}</li>" for w in data.warnings)
    return (
        '<section id="runs"><h2>Runs</h2>'
        + table(
            ["engine", "run", "dialect", "status", "completed", "failed", "error"], rows, raw=True
        )
        + (f"<ul>{warn}</ul>" if warn else "")
        + "</section>"
    )


def validity_html(data: ReportData) -> str:
    """Each run's validity verdict: counts, the runs that are not valid, and the rule."""
    counts = summary.validity_counts(data)
    if not counts:
        return ""
    said = ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))
    rows = [[_labelled(data, e(c)) for c in r] for r in summary.validity_rows(data)]
    return (
        '<section id="run-validity"><h2>Run validity</h2>'
        + f"<p>Runs: {e(said)}.</p>"
        + (table(summary.VALIDITY_HEADERS, rows, raw=True) if rows else "")
        + f'<p class="muted">{e(summary.VALIDITY_NOTE)}</p></section>'
    )


def top_notices(data: ReportData) -> str:
    """What qualifies the answer, in a line each, above it: simulated engines, unfairness."""
    out = ""
    if data.any_simulated:
        notice = e(summary.simulated_notice(data, bold=False))
        out += f'<div class="banner sim top" id="simulated">{notice}</div>'
    unfair = summary.unfair_notice(data)
    if unfair:
        cls = "unfair" if data.unfair() else "warn"
        text = e(unfair).replace("See Validation.", '<a href="#validation">See Validation.</a>')
        out += f'<div class="banner {cls} top" id="fairness-notice">{text}</div>'
    return out


def render(data: ReportData, plots: dict[str, list[Plot]]) -> str:
    """The page, answer first: verdict, curves, every metric's verdict, per-point tables,
    validation, provenance."""
    good = usable(data.results)
    scenarios = list(dict.fromkeys(good["scenario"]))
    sections = [verdict_html(data), capacity_html(data), curves_html(plots), reuse_html(data)]
    sections.append(all_metrics_html(data))
    sections += [scenario_html(data, s, plots.get(s, [])) for s in scenarios]
    if not scenarios:
        sections.append("<section><h2>Results</h2><p>No run finished with results yet.</p>")
        sections.append("</section>")
    validity = validity_html(data)
    sections += [validity, fairness_html(data), setup_html(data), runs_html(data)]
    method = " ".join(summary.method_lines(data)[2:]).strip()
    sections.append(f'<section id="method"><h2>Method</h2><p>{e(method)}</p></section>')
    links = [("verdict", "Verdict")]
    if data.capacities:
        links.append(("capacity", "Capacity"))
    if any(p.kind == "curves" for ps in plots.values() for p in ps):
        links.append(("curves", "Latency vs throughput"))
    if summary.answer(data):
        links.append(("all-metrics", "Every metric"))
    links += [(f"scenario-{slug(s)}", s) for s in scenarios]
    links += [("run-validity", "Run validity")] if validity else []
    links += [("validation", "Validation"), ("setup", "Setup"), ("runs", "Runs")]
    nav = "".join(f'<a href="#{e(target)}">{e(label)}</a>' for target, label in links)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(data.title)}</title><style>{CSS}</style></head><body>"
        f"<header><h1>{_labelled(data, data.title)}</h1>"
        f'<p class="muted">{e(summary.status_line(data).replace("**", ""))}</p></header>'
        f"{top_notices(data)}<nav>{nav}</nav>{''.join(sections)}"
        f"<script>{SCRIPT}</script></body></html>\n"
    )
