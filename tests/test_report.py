"""The suite report: statistics (bootstrap CIs, comparisons, winners, no pooling of rates),
summary.md, the self-contained report.html rendered in headless Chromium, `sonic report`, and
the analysis notebook run headless."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sonic.errors import SonicError
from test_analysis import ENGINES, RATES, SCENARIOS, make_suite

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "analysis.ipynb"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    """A synthetic suite with its report built once (console output captured)."""
    from sonic.report import build_report

    suite = make_suite(tmp_path_factory.mktemp("report") / "20260102-030405-synthetic-pair")
    out = io.StringIO()
    paths = build_report(suite.root, out=out)
    return suite, paths, out.getvalue()


# ------------------------------------------------------------------ statistics


def test_mean_ci_known_cases():
    from sonic.report.stats import mean_ci

    assert mean_ci([5.0, 5.0, 5.0]) == (5.0, 5.0, 5.0)
    mean, lo, hi = mean_ci([7.0])
    assert mean == 7.0 and math.isnan(lo) and math.isnan(hi)
    # large sample: the bootstrap CI of the mean is close to the normal one (±1.96 σ/√n)
    values = np.random.default_rng(1).normal(100.0, 10.0, 400)
    mean, lo, hi = mean_ci(values, seed=3)
    half = 1.96 * values.std() / math.sqrt(values.size)
    assert lo < mean < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.12)
    assert (lo + hi) / 2 == pytest.approx(values.mean(), abs=0.15 * half)
    # seeded: the same input gives the same interval
    assert mean_ci(values, seed=3) == (mean, lo, hi)


def test_bootstrap_request_stat_matches_a_direct_resampling():
    from sonic.report.stats import bootstrap_request_stat

    rng_vals = np.random.default_rng(5)
    per_request = [rng_vals.normal(10, 2, size=int(k)) for k in rng_vals.integers(1, 6, 50)]
    got = bootstrap_request_stat(per_request, "p99", np.random.default_rng(9), n_boot=200)
    # the same resampling written plainly: pick requests, pool their samples, take p99
    rng = np.random.default_rng(9)
    want = []
    for _ in range(200):
        pick = rng.integers(0, len(per_request), size=len(per_request))
        want.append(np.percentile(np.concatenate([per_request[i] for i in pick]), 99))
    assert got == pytest.approx(np.array(want), rel=1e-12)


def _frame(rows):
    from sonic.analysis import RESULT_COLUMNS

    df = pd.DataFrame(rows)
    for col in RESULT_COLUMNS:
        if col not in df:
            df[col] = math.nan
    df["status"] = "ok"
    df["partial"] = False
    df["interrupted"] = False
    df["simulated"] = False
    df["max_concurrency"] = pd.array([pd.NA] * len(df), dtype="Int64")
    df["failed"] = 0.0
    return df


def _rows(engine, rate, ttfts, tputs, scenario="s"):
    return [
        {
            "engine": engine,
            "scenario": scenario,
            "request_rate": rate,
            "repeat": k,
            "p99_ttft_ms": t,
            "output_throughput": o,
        }
        for k, (t, o) in enumerate(zip(ttfts, tputs))
    ]


def test_comparison_ratio_ci_significance_and_winner_direction():
    from sonic.report.stats import COMPARED_METRICS, compare_engines, winners

    metrics = [m for m in COMPARED_METRICS if m.column in ("p99_ttft_ms", "output_throughput")]
    df = _frame(
        _rows("a", 1.0, [100.0, 101.0, 99.0], [500.0, 505.0, 495.0])
        + _rows("b", 1.0, [50.0, 50.5, 49.5], [400.0, 404.0, 396.0])
        # rate 2: overlapping repeats, no real difference
        + _rows("a", 2.0, [100.0, 120.0, 80.0], [500.0, 600.0, 400.0])
        + _rows("b", 2.0, [101.0, 119.0, 81.0], [505.0, 595.0, 405.0])
    )
    comp = compare_engines(df, engines=["a", "b"], metrics=metrics, seed=1)
    assert len(comp) == 4  # 2 rates x 2 metrics, one pair
    c = comp[(comp["request_rate"] == 1.0) & (comp["metric"] == "p99_ttft_ms")].iloc[0]
    assert c["ratio"] == pytest.approx(0.5)
    assert 0.48 < c["ci_low"] < 0.5 < c["ci_high"] < 0.52
    assert c["method"] == "repeats" and bool(c["significant"]) is True
    c2 = comp[(comp["request_rate"] == 2.0) & (comp["metric"] == "p99_ttft_ms")].iloc[0]
    assert c2["ci_low"] < 1.0 < c2["ci_high"] and bool(c2["significant"]) is False

    win = winners(comp, metrics).set_index(["request_rate", "metric"])
    lat = win.loc[(1.0, "p99_ttft_ms")]
    assert lat["winner"] == "b" and lat["runner_up"] == "a"  # lower latency wins
    assert lat["difference_pct"] == pytest.approx(50.0)
    assert lat["ratio"] == pytest.approx(0.5) and lat["ci_high"] < 1.0
    tput = win.loc[(1.0, "output_throughput")]
    assert tput["winner"] == "a"  # higher throughput wins
    assert tput["difference_pct"] == pytest.approx(25.0)  # 500 vs 400: 25% higher
    assert tput["ratio"] == pytest.approx(1.25) and tput["ci_low"] > 1.0
    assert bool(win.loc[(2.0, "p99_ttft_ms")]["significant"]) is False


def test_rates_are_never_pooled():
    from sonic.report.stats import compare_engines, repeat_summary, scenario_verdicts, winners

    # a only ran rate 1, b only rate 2: nothing is comparable
    df = _frame(_rows("a", 1.0, [10.0, 11.0], [1.0, 1.0]) + _rows("b", 2.0, [20.0, 21.0], [2, 2]))
    assert compare_engines(df).empty
    summ = repeat_summary(df, ["p99_ttft_ms"])
    assert sorted(zip(summ["engine"], summ["request_rate"], summ["mean"])) == [
        ("a", 1.0, 10.5),
        ("b", 2.0, 20.5),
    ]
    # one engine, two rates far apart: each rate keeps its own mean; none is the pooled mean
    df2 = _frame(
        _rows("a", 1.0, [10.0, 12.0], [1, 1])
        + _rows("a", 8.0, [100.0, 120.0], [1, 1])
        + _rows("b", 1.0, [20.0, 22.0], [1, 1])
        + _rows("b", 8.0, [50.0, 52.0], [1, 1])
    )
    summ2 = repeat_summary(df2, ["p99_ttft_ms"]).set_index(["engine", "request_rate"])["mean"]
    assert summ2.to_dict() == {
        ("a", 1.0): 11.0,
        ("a", 8.0): 110.0,
        ("b", 1.0): 21.0,
        ("b", 8.0): 51.0,
    }
    assert 60.5 not in summ2.values  # a's rates pooled
    v = scenario_verdicts(winners(compare_engines(df2, seed=2)))
    ttft = next(x for x in v if x["metric"] == "p99_ttft_ms")
    assert [(p["request_rate"], p["winner"]) for p in ttft["points"]] == [(1.0, "a"), (8.0, "b")]
    assert ttft["state"] == "mixed" and ttft["overall"] is None


def test_interrupted_and_failed_runs_stay_out_of_the_statistics():
    from sonic.report.stats import repeat_summary

    df = _frame(_rows("a", 1.0, [10.0, 12.0, 500.0, 900.0], [1, 1, 1, 1]))
    df.loc[2, "interrupted"] = True
    df.loc[2, "status"] = "partial"
    df.loc[3, "status"] = "failed"
    summ = repeat_summary(df, ["p99_ttft_ms"])
    assert summ["mean"].tolist() == [11.0] and summ["n"].tolist() == [2]


def test_single_repeat_latency_uses_requests_and_throughput_is_untested(built):
    suite, _, _ = built
    from sonic.analysis import load_requests, load_results
    from sonic.report.stats import compare_engines

    comp = compare_engines(load_results(suite.root), load_requests(suite.root), seed=7)
    code = comp[comp["scenario"] == "code"]  # one repeat
    chat = comp[comp["scenario"] == "chat"]  # three repeats
    assert set(chat["method"]) == {"repeats"}
    lat = code[code["metric"].str.endswith("_ms")]
    assert set(lat["method"]) == {"requests"} and lat["significant"].notna().all()
    tput = code[code["metric"].str.contains("throughput")]
    assert set(tput["method"]) == {"none"} and tput["significant"].isna().all()
    # beta's TTFT is designed ~2.25x alpha's: the per-request CI brackets that, excludes 1
    row = code[(code["metric"] == "p99_ttft_ms") & (code["request_rate"] == 4.0)].iloc[0]
    assert (row["engine_a"], row["engine_b"]) == ("alpha", "beta")
    assert 1.5 < row["ci_low"] <= row["ratio"] <= row["ci_high"] < 3.5


# ------------------------------------------------------------------ summary.md


def _section(text: str, title: str) -> str:
    start = text.index(title)
    nxt = text.find("\n## ", start + len(title))
    return text[start : nxt if nxt >= 0 else len(text)]


def test_build_report_writes_summary_html_and_plots(built):
    suite, paths, console = built
    assert paths.summary == suite.root / "summary.md" and paths.summary.is_file()
    assert paths.html == suite.root / "report.html" and paths.html.is_file()
    names = sorted(p.name for p in paths.plots)
    assert names == sorted(f"{s}-{k}.png" for s in SCENARIOS for k in ("curves", "distributions"))
    for p in paths.plots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    assert not list(suite.root.glob(".*.tmp")) and not list(suite.root.glob(".plots*"))


def test_summary_content(built):
    from sonic.analysis import load_results
    from sonic.report import fmt
    from sonic.report.stats import repeat_summary

    suite, paths, _ = built
    text = paths.summary.read_text()
    assert text.startswith("# sonic-bench report: synthetic-pair [SIMULATED]")
    # the answer first: verdict, curves, tables, then validation and provenance
    order = [
        "## Verdict",
        "## Latency vs throughput",
        "## Scenario chat",
        "## Scenario code",
        "## Validation",
        "## What was run",
        "## Method",
    ]
    assert [text.index(h) for h in order] == sorted(text.index(h) for h in order)
    assert text.index("![chat: latency–throughput curves](plots/chat-curves.png)") < text.index(
        "### chat · rate 1 req/s"
    )
    # unfairness is still said before the answer, in one line that names the checks
    head = text[: text.index("## Verdict")]
    assert "UNFAIR COMPARISON" in head and "max_output_len failed" in head
    assert "prefix_caching warned" in head
    # the validation: problems in a table (details as key: value), passing checks folded
    fair = _section(text, "## Validation")
    assert "UNFAIR COMPARISON" in fair and "max_output_len" in fair and "| FAIL |" in fair
    assert "alpha: 256; beta: 1024" in fair and "{" not in fair
    assert fair.index("| FAIL |") < fair.index("| WARN |") < fair.index("<details>")
    assert fair.index("<details>") < fair.index("| PASS | dtype |") < fair.index("</details>")
    setup = _section(text, "## What was run")
    for name in ENGINES:
        assert f"{name}-1.2.3" in setup and f"--engine {name}" in setup
    assert "seed 7" in setup and "NVIDIA H100 80GB HBM3" in setup and "bench-1" in setup
    # a comparison table for every scenario and rate, with the per-rate values
    summ = repeat_summary(load_results(suite.root), seed=7)
    for scenario in SCENARIOS:
        for rate in RATES:
            heading = f"### {scenario} · rate {rate:g} req/s"
            assert heading in text
            block = text[text.index(heading) :].split("\n### ")[0].split("\n## ")[0]
            for engine in ENGINES:
                r = summ[
                    (summ["engine"] == engine)
                    & (summ["scenario"] == scenario)
                    & (summ["request_rate"] == rate)
                    & (summ["metric"] == "p99_ttft_ms")
                ].iloc[0]
                assert fmt.value_ci(r["mean"], r["ci_low"], r["ci_high"]) in block
            assert "beta [SIMULATED] / alpha" in block  # the pair's ratio row
    # verdict: TTFT to alpha (designed 40 vs 90 ms base), TPOT to beta (8 vs 5 ms ITL)
    win = _section(text, "## Verdict")
    ttft = next(ln for ln in win.splitlines() if ln.startswith("| chat | p99 TTFT"))
    assert "alpha lower at 2 of 2 point(s), significant" in ttft and "95% CI [" in ttft
    tpot = next(ln for ln in win.splitlines() if ln.startswith("| chat | p99 TPOT"))
    assert "beta [SIMULATED] lower at 2 of 2 point(s), significant" in tpot
    # the opening answer: one line per scenario × headline metric
    said = [ln for ln in win.splitlines() if ln.startswith("- **")]
    assert [ln.split(":**")[0] for ln in said] == [
        f"- **{s} · {m}" for s in SCENARIOS
        for m in ("output throughput (tok/s)", "p99 TTFT (ms)", "p99 TPOT (ms)")
    ]  # fmt: skip
    assert "untested (one repeat: no confidence interval); by mean" in said[3]


def test_the_answer_quotes_the_computed_verdicts(built):
    """Every number of the opening answer comes from stats.winners, none is pooled."""
    from sonic.report import fmt, html, summary
    from sonic.report.model import collect

    suite, paths, _ = built
    data = collect(suite.root)
    said = dict(summary.answer(data))
    line = said["chat · p99 TTFT (ms):"]
    win = data.winners
    for rate in RATES:
        w = win[
            (win["scenario"] == "chat")
            & (win["metric"] == "p99_ttft_ms")
            & (win["request_rate"] == rate)
        ].iloc[0]
        assert w["winner"] == "alpha" and bool(w["significant"]) is True
        interval = fmt.ci(w["ci_low"], w["ci_high"], fmt.ratio)
        assert (
            f"{fmt.pct(w['difference_pct'])} at rate {rate:g} req/s (ratio "
            f"{fmt.ratio(w['ratio'])}, 95% CI {interval})"
        ) in line
    assert line.startswith("alpha lower at 2 of 2 point(s), significant: ")
    # the same sentences open both files
    assert "- **chat · p99 TTFT (ms):** " + line in paths.summary.read_text()
    assert html.e(line) in paths.html.read_text()


def test_details_lines_are_readable_text_not_json():
    from sonic.report.fmt import details_lines

    assert details_lines({"alpha": 256, "beta": 1024}) == ["alpha: 256", "beta: 1024"]
    assert details_lines(None) == details_lines({}) == details_lines([]) == []
    # the shapes validate.py writes: settings, fingerprints, a client signature, answers
    settings = {
        "alpha": {"state": "set", "value": "bfloat16"},
        "beta": {"state": "default", "value": None},
    }
    assert details_lines(settings) == [
        "alpha: state=set, value=bfloat16",
        "beta: state=default, value=none",
    ]
    assert details_lines({"fingerprints": {"alpha": "ab12", "beta": "ab12"}, "num_prompts": 8}) == [
        "fingerprints: alpha=ab12, beta=ab12",
        "num_prompts: 8",
    ]
    signature = {
        "signature": {
            "rules": {"compat": "vllm", "token_count": "server"},
            "ignore_eos": True,
            "sampling": {"temperature": 0.0},
            "stop": ["</s>", "\n\n"],
        }
    }
    assert details_lines(signature) == [
        "signature › rules: compat=vllm, token_count=server",
        "signature › ignore_eos: yes",
        "signature › sampling: temperature=0",
        "signature › stop: </s>, '\\n\\n'",
    ]
    answers = {"answers": {"alpha": {"ok": True, "text": "x" * 500, "extra": {"a": [1, 2]}}}}
    lines = details_lines(answers, max_chars=40)
    assert lines[0] == "answers › alpha › ok: yes"
    assert lines[1] == "answers › alpha › text: " + "x" * 39 + "…"
    assert lines[2] == "answers › alpha › extra › a: 1, 2"
    many = details_lines({f"k{i}": i for i in range(30)}, max_lines=5)
    assert many == ["k0: 0", "k1: 1", "k2: 2", "k3: 3", "… and 26 more"]
    for shape in (settings, signature, answers, [{"a": 1}, {"b": [1, {"c": 2}]}]):
        for ln in details_lines(shape):
            assert not ln.lstrip().startswith(("{", "[")) and '{"' not in ln and "':" not in ln


def test_simulated_engines_are_labelled_everywhere(built):
    suite, paths, console = built
    text = paths.summary.read_text()
    assert "**[SIMULATED]** Results from beta" in text
    # every table the report computes labels the simulated engine (validation.json's own
    # text, quoted in the validation section, is left as it was written)
    results_part = text[text.index("## Verdict") :].replace(_section(text, "## Validation"), "")
    # every mention of the simulated engine in tables carries the label; the real one never
    for line in results_part.splitlines():
        if line.startswith("|"):
            line = line.replace("--engine beta", "").replace("beta-1.2.3", "")
            assert not re.search(r"\bbeta\b(?! \[SIMULATED\])", line), line
    assert "alpha [SIMULATED]" not in text
    assert "beta [SIMULATED]" in console and "[SIMULATED] Results from beta" in console
    assert "alpha [SIMULATED]" not in console
    html = paths.html.read_text()
    assert "<title>sonic-bench report: synthetic-pair [SIMULATED]</title>" in html
    assert 'id="simulated"' in html
    assert html.count('beta<span class="tag">[SIMULATED]</span>') >= 3
    assert 'alpha<span class="tag">' not in html


def test_console_summary_is_short_and_names_the_winners(built):
    _, _, console = built
    lines = console.strip().splitlines()
    assert len(lines) <= 12
    assert lines[0].startswith("sonic-bench report: synthetic-pair [SIMULATED]: 16 runs (16 ok)")
    assert any(ln.startswith("UNFAIR: max_output_len (fail)") for ln in lines)
    assert any("chat · p99 TTFT (ms): alpha lower at 2 of 2 point(s)" in ln for ln in lines)
    assert any("code · output throughput (tok/s): untested (one repeat)" in ln for ln in lines)
    assert lines[-1].startswith("report: ") and "report.html" in lines[-1]


# ------------------------------------------------------------------ report.html


def test_report_html_is_self_contained_and_escaped(built):
    _, paths, _ = built
    html = paths.html.read_text()
    # no reference to anything outside the file
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?(?:https?:)?//", html, re.I)
    assert "@import" not in html and "<link" not in html
    assert not re.search(r"<script[^>]+src=", html, re.I)
    # every plot is inline as a decodable PNG
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)
    assert len(images) == len(paths.plots) == 4
    assert all(base64.b64decode(b)[:8] == b"\x89PNG\r\n\x1a\n" for b in images)
    # text from the results directory is escaped
    assert "beta at 1024 &lt;script&gt;" in html and "1024 <script>" not in html
    for section in SECTION_ORDER:
        assert f'id="{section}"' in html
    assert "UNFAIR COMPARISON" in html and "manifest.json" in html


# the report's sections, in the order a reader meets them: the answer first
SECTION_ORDER = (
    "verdict",
    "curves",
    "all-metrics",
    "scenario-chat",
    "scenario-code",
    "validation",
    "setup",
    "runs",
    "method",
)


class _Cells(HTMLParser):
    """Every table cell's text, its table's class and whether it sits in a <details>."""

    def __init__(self) -> None:
        super().__init__()
        self.cells: list[dict] = []
        self.details = 0
        self.tables: list[str] = []
        self.cell: dict | None = None

    def handle_starttag(self, tag, attrs):
        if tag == "details":
            self.details += 1
        elif tag == "table":
            self.tables.append(dict(attrs).get("class") or "")
        elif tag in ("td", "th"):
            table = self.tables[-1] if self.tables else ""
            self.cell = {"tag": tag, "text": "", "folded": self.details > 0, "table": table}

    def handle_endtag(self, tag):
        if tag == "details":
            self.details -= 1
        elif tag == "table" and self.tables:
            self.tables.pop()
        elif tag in ("td", "th") and self.cell is not None:
            self.cell["text"] = " ".join(self.cell["text"].split())
            self.cells.append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell["text"] += data


def _cells(html: str) -> list[dict]:
    parser = _Cells()
    parser.feed(html)
    return parser.cells


def test_report_html_leads_with_the_answer(built):
    _, paths, _ = built
    html = paths.html.read_text()
    at = {s: html.index(f'<section id="{s}"') for s in SECTION_ORDER}
    assert list(at) == sorted(at, key=at.get)  # verdict, curves, tables, validation, details
    # the notices that qualify the answer stand above it, one line each
    assert html.index('id="simulated"') < html.index('id="fairness-notice"') < at["verdict"]
    notice = html[html.index('id="fairness-notice"') : at["verdict"]]
    assert "UNFAIR COMPARISON" in notice and "max_output_len failed" in notice
    # the opening paragraph: per scenario and headline metric, margin, CI, significance
    answer = html[html.index('<p class="answer">', at["verdict"]) : at["curves"]]
    answer = answer[: answer.index("</p>")]
    for scenario in SCENARIOS:
        for metric in ("output throughput (tok/s)", "p99 TTFT (ms)", "p99 TPOT (ms)"):
            assert f"<b>{scenario} · {metric}:</b>" in answer
    assert answer.count("95% CI [") >= 8 and "significant" in answer
    # the first figure is a latency–throughput plot, and it comes before any value table
    first_img = html.index("<img")
    assert at["curves"] < first_img < html.index('<table class="values"')
    assert "latency–throughput curves" in html[first_img : html.index("</figure>", first_img)]


def test_validation_shows_problems_and_folds_passing_checks(built):
    _, paths, _ = built
    html = paths.html.read_text()
    section = html[html.index('<section id="validation"') :]
    section = section[: section.index("</section>")]
    cells = _cells(section)
    status = {c["text"]: c for c in cells if c["text"] in ("FAIL", "WARN", "PASS")}
    assert not status["FAIL"]["folded"] and not status["WARN"]["folded"]
    assert status["PASS"]["folded"]  # inside <details>, closed
    assert re.search(r"<details class=\"passing\"><summary>1 passing check", section)
    assert "<details open" not in section
    assert (
        section.index("max_output_len")
        < section.index("prefix_caching")
        < section.index("<details")
    )
    assert section.index("<details") < section.index("both bfloat16")
    # structured details as key: value lines
    assert "alpha: 256<br>beta: 1024" in section


def test_no_table_cell_holds_json(built, tmp_path: Path):
    from sonic.report import build_report
    from test_analysis import VALIDATION_UNFAIR

    _, paths, _ = built
    # and a validation.json with the nested details validate.py writes
    suite = make_suite(
        tmp_path / "nested",
        validation={
            "checks": [
                *VALIDATION_UNFAIR["checks"],
                {
                    "name": "fairness.chat.client",
                    "status": "pass",
                    "reason": "every engine gets the same rules",
                    "details": {
                        "signature": {
                            "rules": {"compat": "vllm", "token_count": "server"},
                            "sampling": {"temperature": 0.0, "top_p": 1.0},
                            "max_tokens": {"total": 240, "max": 13},
                        }
                    },
                },
                {
                    "name": "settings.dtype",
                    "status": "warn",
                    "reason": "dtype not controlled for every engine",
                    "details": {
                        "alpha": {"state": "set", "value": "bfloat16"},
                        "beta": {"state": "default", "value": None},
                    },
                },
                {"name": "consistency.probe", "status": "pass", "details": [{"a": [1, 2]}]},
            ],
            "fair": False,
        },
    )
    nested = build_report(suite.root, quiet=True)
    for page in (paths.html, nested.html):
        cells = _cells(page.read_text())
        assert len(cells) > 100
        for c in cells:
            text = c["text"]
            assert not text.startswith(("{", "[")), c
            try:
                parsed = json.loads(text)
            except ValueError:
                continue
            assert not isinstance(parsed, (dict, list)), c
    text = nested.html.read_text()
    assert "signature › sampling: temperature=0, top_p=1" in text
    assert "alpha: state=set, value=bfloat16<br>beta: state=default, value=none" in text


def _chromium() -> str:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(
        "headless Chromium is required for the report test and was not found: "
        ".ci/run (and make test's setup) must install Debian's `chromium` package"
    )


def _render(html_file: Path, work: Path, *extra: str) -> tuple[str, list[str]]:
    """Open a file in headless Chromium with every host name unresolvable; return the DOM
    after load and the URLs the page itself asked the network for (from Chromium's net log;
    the browser's own background requests are not the page's and are left out)."""
    netlog = work / "netlog.json"
    cmd = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={work / 'profile'}",
        f"--log-net-log={netlog}",
        "--virtual-time-budget=5000",
        *extra,
        f"file://{html_file}",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = netlog.read_text(errors="replace")
    try:
        events = json.loads(text).get("events", [])
    except json.JSONDecodeError:  # an unterminated log (browser killed): read it line-wise
        events = [json.loads(ln.rstrip(",")) for ln in text.splitlines() if ln.startswith('{"')]
    page_urls = []
    for ev in events:
        p = ev.get("params") or {}
        url = p.get("url", "")
        if "initiator" in p and "file://" in str(p.get("network_isolation_key", "")):
            if not url.startswith(("file:", "data:")):
                page_urls.append(url)
    return proc.stdout, page_urls


# Added to a copy of the report by the layout test: where the browser laid things out.
LAYOUT_PROBE = """<script>
window.addEventListener("load", function () {
  function top(sel) {
    var el = document.querySelector(sel);
    return el ? String(Math.round(el.getBoundingClientRect().top + window.scrollY)) : "-1";
  }
  function shown(sel) {  // closed <details> content keeps boxes: ask for visibility
    var el = document.querySelector(sel);
    if (!el) return "missing";
    var vis = el.checkVisibility ? el.checkVisibility({contentVisibilityAuto: true})
                                 : el.getClientRects().length > 0;
    return vis ? "yes" : "no";
  }
  var b = document.body;
  b.setAttribute("data-top-verdict", top("#verdict"));
  b.setAttribute("data-top-answer", top("p.answer"));
  b.setAttribute("data-top-curves", top("#curves img"));
  b.setAttribute("data-top-values", top("table.values"));
  b.setAttribute("data-top-validation", top("#validation"));
  b.setAttribute("data-problems-shown", shown("#validation table.problems"));
  b.setAttribute("data-passing-shown", shown("#validation details.passing table"));
});
</script></body>"""


def test_report_renders_in_headless_chromium_without_network(built, tmp_path: Path):
    _, paths, _ = built
    dom, requested = _render(paths.html, tmp_path / "a", "--dump-dom")
    assert requested == []
    assert "<title>sonic-bench report: synthetic-pair [SIMULATED]</title>" in dom
    # the inline script ran after load and saw every image decoded
    assert 'data-images="4"' in dom and 'data-images-loaded="4"' in dom
    assert dom.count("<table") >= 10 and "Scenario chat" in dom and "Scenario code" in dom

    # as laid out: the answer on the first screen, then the curves, the tables, validation;
    # failures shown, passing checks folded
    probed = tmp_path / "probed.html"
    probed.write_text(paths.html.read_text().replace("</body>", LAYOUT_PROBE, 1))
    dom, _ = _render(probed, tmp_path / "c", "--dump-dom", "--window-size=1280,900")
    layout = dict(re.findall(r'data-(top-[a-z]+|[a-z]+-shown)="([^"]*)"', dom))
    tops = [
        int(layout[f"top-{k}"]) for k in ("verdict", "answer", "curves", "values", "validation")
    ]
    assert 0 < tops[0] < tops[1] < 900, layout  # the answer starts on the first screen
    assert tops == sorted(tops), layout
    assert layout["problems-shown"] == "yes" and layout["passing-shown"] == "no", layout

    shot = tmp_path / "shot.png"
    _render(paths.html, tmp_path / "b", f"--screenshot={shot}", "--window-size=1200,2400")
    from matplotlib.image import imread

    pixels = imread(str(shot))
    assert pixels.shape[0] >= 1000 and pixels.shape[1] >= 1000
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1])[::97], axis=0)) > 20  # not blank
    # the unfair notice's red (#fde2e1) is painted near the top, above the answer
    rgb = np.round(pixels[..., :3] * 255)
    red_rows = np.where((np.abs(rgb - [253, 226, 225]).sum(axis=-1) < 6).any(axis=1))[0]
    assert red_rows.size and red_rows.min() < int(layout["top-verdict"]), red_rows[:5]


def test_the_network_check_catches_an_external_reference(tmp_path: Path):
    page = tmp_path / "external.html"
    page.write_text(
        "<!DOCTYPE html><html><head><title>t</title>"
        '<link rel="stylesheet" href="https://cdn.example.com/x.css"></head>'
        '<body><img src="http://example.com/a.png"></body></html>'
    )
    _, requested = _render(page, tmp_path / "c", "--dump-dom")
    assert "https://cdn.example.com/x.css" in requested
    assert "http://example.com/a.png" in requested


# ------------------------------------------------------------------ partial and bad input


def test_report_on_an_interrupted_suite(built, tmp_path: Path):
    from sonic.report import build_report

    suite, _, _ = built
    root = tmp_path / "interrupted"
    shutil.copytree(suite.root, root)
    (root / "validation.json").unlink()
    manifest = json.loads((root / "manifest.json").read_text())
    manifest.update(status="interrupted", finished_at=None)
    manifest["runs"] = [r for r in manifest["runs"] if r["scenario"] == "chat"]
    manifest["runs"][-1].update(status="failed", error="server exited with code 1")
    (root / "manifest.json").write_text(json.dumps(manifest))
    shutil.rmtree(root / "runs" / "beta" / "code")  # never ran
    (root / "plots" / "stale.png").write_bytes(b"old")

    out = io.StringIO()
    paths = build_report(root, out=out)
    text = paths.summary.read_text()
    assert "Suite status: **interrupted**" in text
    assert "Fairness was not checked" in text
    problems = _section(text, "## Runs with problems")
    assert "server exited with code 1" in problems and "failed" in problems
    # alpha's code runs are on disk but not in the manifest: still reported, beta had none
    assert "### code · rate 1 req/s" in text
    assert not (root / "plots" / "stale.png").exists()
    assert "fairness: not checked" in out.getvalue()


def test_report_with_no_finished_run(tmp_path: Path):
    from sonic.report import build_report
    from test_analysis import manifest_doc

    root = tmp_path / "empty"
    root.mkdir()
    (root / "manifest.json").write_text(json.dumps(manifest_doc([], status="running")))
    paths = build_report(root, quiet=True)
    assert "No run finished with results yet." in paths.summary.read_text()
    assert paths.plots == []
    assert "No run finished with results yet." in paths.html.read_text()


def test_sonic_report_command(built, tmp_path: Path):
    suite, _, _ = built
    root = tmp_path / "cli"
    shutil.copytree(suite.root, root)
    (root / "summary.md").unlink()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.run(
        [sys.executable, "-m", "sonic", "report", str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert (root / "summary.md").is_file() and "report.html" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "sonic", "report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        f"sonic report: error: results directory {tmp_path / 'nope'} does not exist"
    ]


def test_report_command_errors_are_one_line(tmp_path: Path):
    from sonic.commands.report import main

    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(SonicError, match="is not a JSON object") as err:
        main([str(tmp_path / "bad")])
    assert "\n" not in str(err.value)
    with pytest.raises(SonicError, match="not a sonic results directory"):
        main([str(tmp_path)])


# ------------------------------------------------------------------ notebook


def test_analysis_notebook_runs_headless(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import nbformat
    from nbclient import NotebookClient

    suite, _, _ = built
    monkeypatch.setenv("SONIC_RESULTS_DIR", str(suite.root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    # the kernel is started as `python`: make it this interpreter
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert "parameters" in nb.cells[1].metadata.get("tags", [])
    NotebookClient(
        nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    assert any("[SIMULATED] not real measurements: beta" in o.get("text", "") for o in outputs)
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "alpha" in html and "p99_ttft_ms" in html
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pngs) == len(SCENARIOS)  # one curve figure per scenario


def test_an_engine_that_did_not_honour_ignore_eos_is_named(tmp_path: Path):
    from sonic.analysis import load_results
    from sonic.report import build_report

    suite = make_suite(tmp_path / "20260102-030405-eos")
    for run in suite.manifest["runs"]:
        if run["engine"] == "beta":
            path = suite.root / run["file"]
            doc = json.loads(path.read_text())
            doc["sonic"]["output_lengths"] = {
                "ignore_eos": True, "checked": 10, "short": 2, "long": 0, "unchecked": 0,
                "short_examples": [[0, 3, 12]],
            }  # fmt: skip
            path.write_text(json.dumps(doc))
    df = load_results(suite.root)
    assert df.loc[df["engine"] == "alpha", "eos_not_honoured"].isna().all()
    beta_runs = int((df["engine"] == "beta").sum())
    assert df.loc[df["engine"] == "beta", "eos_not_honoured"].sum() == 2 * beta_runs
    paths = build_report(suite.root, out=io.StringIO())
    text = paths.summary.read_text()
    assert f"beta: {2 * beta_runs} requests stopped before max_tokens" in text
    assert not [ln for ln in text.splitlines() if "alpha:" in ln and "max_tokens" in ln]
