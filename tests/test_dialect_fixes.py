"""The dialect fixes end to end: core errors as one line, --random-range-ratio pairs,
rps_change_events, vLLM's label and burstiness, --hf-name and its columns,
--chat-template-kwargs, 200 replies without a choice chunk, and --max-benchmark-duration-s
cut-offs under each dialect.

Runs go through ``python -m sonic`` against ``python -m sonic sim`` in its own process (or a
tiny SSE stub where the sim cannot misbehave in the needed way); the dataset fixes are checked
at the sampler, through the real flag parser.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simproc import TOKENIZER, load_json, run_sonic, sim_process
from sonic import _core
from sonic.benchmark import load_workload
from sonic.compat import parse_run_args
from sonic.errors import SonicError
from sonic.metrics import MetricRules, compute_metrics
from sonic.records import CHUNK_DONE, CHUNK_EMPTY_CHOICE, CHUNK_NO_CHOICE
from test_metrics import Req, build_records, stream

BASE = [
    "--tokenizer", str(TOKENIZER),
    "--dataset-name", "random",
    "--random-input-len", "32",
    "--random-output-len", "16",
    "--disable-tqdm",
    "--seed", "7",
]  # fmt: skip
# The sim serves model "m"; MAX needs --model, and one model id keeps every run alike.
SIM = ["--model", "m", "--ttft-ms", "1", "--itl-ms", "1", "--output-len", "4096"]


def _raw_lines(result: Path) -> list[dict]:
    doc = load_json(result)
    raw = result.parent / doc["sonic"]["raw_records"]
    return [json.loads(line) for line in raw.read_text().splitlines() if line.strip()]


def _one_line_error(cp) -> str:
    assert "Traceback" not in cp.stderr, cp.stderr
    lines = [ln for ln in cp.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, cp.stderr
    return lines[0]


# ------------------------------------------------------------------ core errors


def test_core_error_is_a_sonic_error():
    assert issubclass(_core.CoreError, SonicError)
    assert _core.CoreError.exit_code == SonicError.exit_code
    with pytest.raises(SonicError, match="request_rate"):
        _core.schedule_preview(
            json.dumps({"request_rate": 0.0, "convention": "precomputed", "seed": 0}), 3
        )


def test_core_rejection_reaches_the_user_as_one_line():
    """Values only the Rust core validates: an exit code, one line naming the problem."""
    cases = [
        # A header value with a control character (the parser checks only CR and LF).
        (["--header", "X-Probe=bad\x01value"], ("header", "x-probe")),
        # A linear ramp from 0 req/s: the parser allows it, the schedule does not.
        (
            [
                "--ramp-up-strategy", "linear",
                "--ramp-up-start-rps", "0", "--ramp-up-end-rps", "5",
            ],
            ("start",),
        ),
    ]  # fmt: skip
    with sim_process(*SIM) as url:
        for extra, words in cases:
            cp = run_sonic(
                "--model", "m", "--base-url", url, *BASE, "--num-prompts", "2",
                "--skip-test-prompt", *extra,
            )  # fmt: skip
            line = _one_line_error(cp)
            assert cp.returncode != 0
            assert line.startswith("sonic run: error: "), line
            assert "bad\x01value" not in line  # header values are never echoed
            for word in words:
                assert word in line.lower(), line


# ------------------------------------------------------------------ --random-range-ratio pairs


def test_range_ratio_pair_vllm_varies_input_only(tmp_path):
    with sim_process(*SIM) as url:
        cp = run_sonic(
            "--model", "m", "--base-url", url, *BASE, "--ignore-eos",
            "--random-range-ratio", '{"input": 0.5, "output": 0.0}',
            "--num-prompts", "20", "--request-rate", "inf", "--save-result", "--save-detailed",
            "--result-dir", str(tmp_path), "--result-filename", "pair.json",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    doc = load_json(tmp_path / "pair.json")
    assert doc["completed"] == 20
    assert doc["output_lens"] == [16] * 20
    assert len(set(doc["input_lens"])) > 3, doc["input_lens"]
    lines = _raw_lines(tmp_path / "pair.json")
    assert [ln["output_len"] for ln in lines] == [16] * 20


def test_range_ratio_pair_max_fixes_output_with_one(tmp_path):
    """MAX's ratio is a lower bound: 1.0 means fixed, 0.5 means U[L/2, L]."""
    with sim_process(*SIM) as url:
        cp = run_sonic(
            "--compat", "max", "--model", "m", "--base-url", url, *BASE,
            "--random-range-ratio", '{"input": 0.5, "output": 1.0}',
            "--num-prompts", "20", "--request-rate", "inf", "--save-detailed",
            "--result-dir", str(tmp_path), "--result-filename", "pair.json",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    doc = load_json(tmp_path / "pair.json")
    assert doc["completed"] == 20 and doc["failures"] == 0
    assert doc["output_lens"] == [16] * 20
    assert len(set(doc["input_lens"])) > 3, doc["input_lens"]
    assert all(len_ <= 32 for len_ in doc["input_lens"]), doc["input_lens"]


# ------------------------------------------------------------------ vLLM result header keys


def test_ramp_up_run_writes_rps_change_events(tmp_path):
    """vLLM records the start rate, then each whole rate the ramp passes."""
    with sim_process(*SIM) as url:
        cp = run_sonic(
            "--model", "m", "--base-url", url, *BASE, "--ignore-eos",
            "--random-output-len", "4",
            "--ramp-up-strategy", "linear", "--ramp-up-start-rps", "10",
            "--ramp-up-end-rps", "30", "--num-prompts", "40", "--skip-test-prompt",
            "--save-result", "--result-dir", str(tmp_path), "--result-filename", "ramp.json",
        )  # fmt: skip
    assert cp.returncode == 0, cp.stderr
    doc = load_json(tmp_path / "ramp.json")
    events = doc["rps_change_events"]
    assert isinstance(events, list) and events
    assert all(set(e) == {"rps", "timestamp"} for e in events), events
    rps = [e["rps"] for e in events]
    assert all(isinstance(r, int) and not isinstance(r, bool) for r in rps), rps
    assert rps == list(range(10, 31)), rps
    stamps = [datetime.fromisoformat(e["timestamp"]) for e in events]
    assert stamps == sorted(stamps)


def test_vllm_label_burstiness_and_no_rps_events(tmp_path):
    with sim_process(*SIM) as url:
        common = ["--model", "m", "--base-url", url, *BASE, "--ignore-eos", "--num-prompts", "5"]
        common += ["--random-output-len", "4", "--skip-test-prompt", "--save-result"]
        common += ["--result-dir", str(tmp_path)]
        cp = run_sonic(*common, "--request-rate", "inf", "--result-filename", "plain.json")
        assert cp.returncode == 0, cp.stderr
        cp = run_sonic(
            *common, "--request-rate", "200", "--burstiness", "inf", "--label", "my-run",
            "--result-filename", "labelled.json",
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
    plain = load_json(tmp_path / "plain.json")
    assert plain["label"] is None
    assert type(plain["burstiness"]) is float and plain["burstiness"] == 1.0
    assert "rps_change_events" not in plain
    labelled = load_json(tmp_path / "labelled.json")
    assert labelled["label"] == "my-run"
    assert labelled["burstiness"] == math.inf
    assert "rps_change_events" not in labelled


# ------------------------------------------------------------------ --hf-name and its columns


def test_hf_name_text_and_output_columns_reach_the_sampler(tmp_path, tokenizer_dir):
    rows = [
        {
            "prompt": f"ignored prompt {i}",
            "body": f"Question number {i}: {'why ' * (i + 1)}?",
            "answer": "yes " * (3 * i + 1),
        }
        for i in range(6)
    ]
    path = tmp_path / "local.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = [
        "--tokenizer", str(tokenizer_dir), "--dataset-name", "hf", "--hf-name", str(path),
        "--num-prompts", "6", "--skip-chat-template", "--disable-shuffle",
    ]  # fmt: skip

    tokenizer, samples = load_workload(parse_run_args(argv))
    assert [s.prompt for s in samples] == [r["prompt"] for r in rows]  # the default column

    args = parse_run_args([*argv, "--hf-text-column", "body", "--hf-output-column", "answer"])
    tokenizer, samples = load_workload(args)
    assert [s.prompt for s in samples] == [r["body"] for r in rows]
    want = [tokenizer.count(r["answer"], add_special_tokens=True) for r in rows]
    assert [s.expected_output_len for s in samples] == want
    assert len(set(want)) == len(rows)  # the lengths come from each row, not one default

    with pytest.raises(SonicError, match="no column 'missing'"):
        load_workload(parse_run_args([*argv, "--hf-text-column", "missing"]))


# ------------------------------------------------------------------ --chat-template-kwargs


def test_chat_template_kwargs_feed_the_client_side_template(tmp_path, tokenizer_dir, custom_path):
    tok = tmp_path / "tokenizer"
    shutil.copytree(tokenizer_dir, tok)
    config_path = tok / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = "{% if shout %}LOUD {% endif %}" + config["chat_template"]
    config_path.write_text(json.dumps(config))
    argv = [
        "--tokenizer", str(tok), "--endpoint", "/v1/completions", "--dataset-name", "custom",
        "--dataset-path", str(custom_path), "--num-prompts", "3", "--disable-shuffle",
    ]  # fmt: skip

    def prompts(*extra: str) -> list[str]:
        args = parse_run_args([*argv, *extra])
        assert args.target.api == "completions"
        return [s.prompt for s in load_workload(args)[1]]

    quiet = prompts()
    loud = prompts("--chat-template-kwargs", '{"shout": true}')
    assert all(p.startswith("<|im_start|>user\n") for p in quiet), quiet
    assert loud == ["LOUD " + p for p in quiet]
    assert prompts("--chat-template-kwargs", '{"shout": false}') == quiet


# ------------------------------------------------------------------ 200 without a choice chunk


def test_no_choice_chunk_rules_on_records():
    """Usage-only + [DONE] fails in both dialects; an empty choice passes vLLM, fails MAX."""
    usage_only = Req(
        sent=0.0,
        chunks=[(10.0, CHUNK_NO_CHOICE, ""), (11.0, CHUNK_DONE, "")],
        end=11.0,
        prompt_tokens=10,
        completion_tokens=0,
    )
    empty_choice = Req(
        sent=0.0,
        chunks=[(5.0, CHUNK_EMPTY_CHOICE, ""), (10.0, CHUNK_NO_CHOICE, ""), (11.0, CHUNK_DONE, "")],
        end=11.0,
        prompt_tokens=10,
        completion_tokens=0,
    )
    normal = stream(0.0, ttft=5.0, itl=2.0, n_text=3)
    expected = {"vllm": [False, True, True], "max": [False, False, True]}
    for compat, want in expected.items():
        rules = MetricRules.for_compat(compat)
        m = compute_metrics(
            build_records([usage_only, empty_choice, normal]),
            rules,
            [10, 10, 10],
            count_tokens=lambda texts: [len(t.split()) for t in texts],
        )
        assert m.requests.success.tolist() == want, compat
        assert m.completed == sum(want) and m.failed == 3 - sum(want), compat


class _SseStub(BaseHTTPRequestHandler):
    """200 text/event-stream replies whose chunks are the server's ``chunks``."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"error": "not found"}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        body = "".join(f"data: {c}\n\n" for c in self.server.chunks).encode()  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _sse_stub(chunks: list[str]) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SseStub)
    server.chunks = chunks  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


_HEAD = '"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m"'
USAGE_ONLY = [
    "{" + _HEAD + ', "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 0}}',
    "[DONE]",
]
EMPTY_CHOICE = [
    "{" + _HEAD + ', "choices": [{"index": 0, "text": "", "finish_reason": "stop"}]}',
    *USAGE_ONLY,
]


@pytest.mark.parametrize(
    ("chunks", "compat", "completed"),
    [
        (USAGE_ONLY, "vllm", 0),
        (USAGE_ONLY, "max", 0),
        (EMPTY_CHOICE, "vllm", 3),
        (EMPTY_CHOICE, "max", 0),
    ],
    ids=["usage-only-vllm", "usage-only-max", "empty-choice-vllm", "empty-choice-max"],
)
def test_no_choice_chunk_end_to_end(tmp_path, chunks, compat, completed):
    with _sse_stub(chunks) as url:
        cp = run_sonic(
            "--compat", compat, "--model", "m", "--base-url", url, *BASE,
            "--endpoint", "/v1/completions", "--num-prompts", "3", "--skip-test-prompt",
            "--save-result", "--save-detailed", "--always-save-result",
            "--result-dir", str(tmp_path), "--result-filename", "stub.json",
        )  # fmt: skip
    assert "Traceback" not in cp.stderr, cp.stderr
    doc = load_json(tmp_path / "stub.json")
    failed = doc["failed"] if compat == "vllm" else doc["failures"]
    assert (doc["completed"], failed) == (completed, 3 - completed), cp.stderr
    assert cp.returncode == (0 if completed else 1), cp.stderr
    assert [ln["success"] for ln in _raw_lines(tmp_path / "stub.json")] == [bool(completed)] * 3
    counts = doc["sonic"]["error_counts"]
    if completed:
        assert not counts
    else:
        # vLLM's rule names the missing choice; MAX's names the missing text.
        why = "no choice chunk" if compat == "vllm" else "no generated text"
        assert len(counts) == 1 and why in next(iter(counts)), counts


# ------------------------------------------------------------------ duration cut-offs


def _cut_off_run(tmp_path: Path, url: str, compat: str) -> tuple[int, dict]:
    # 10 requests, 2 at a time, 5 tokens 20 ms apart each (~0.1 s): about 0.5 s of work,
    # cut at 0.25 s.
    cp = run_sonic(
        "--compat", compat, "--model", "m", "--base-url", url, *BASE, "--ignore-eos",
        "--random-output-len", "5", "--num-prompts", "10", "--request-rate", "inf",
        "--max-concurrency", "2", "--max-benchmark-duration-s", "0.25", "--skip-test-prompt",
        "--save-result", "--always-save-result",
        "--result-dir", str(tmp_path), "--result-filename", f"cut-{compat}.json",
    )  # fmt: skip
    assert "Traceback" not in cp.stderr, cp.stderr
    return cp.returncode, load_json(tmp_path / f"cut-{compat}.json")


def test_duration_cut_offs_are_excluded_under_max_and_failed_under_vllm(tmp_path):
    with sim_process("--model", "m", "--ttft-ms", "20", "--itl-ms", "20") as url:
        rc_max, mx = _cut_off_run(tmp_path, url, "max")
        rc_vllm, vl = _cut_off_run(tmp_path, url, "vllm")

    cut = mx["sonic"]["cut_off"]
    assert cut > 0
    assert mx["failures"] == 0
    assert mx["completed"] + mx["failures"] == 10 - cut
    assert rc_max == 0  # nothing failed: cut-offs are not failures under MAX

    cut = vl["sonic"]["cut_off"]
    assert cut > 0
    assert vl["completed"] + vl["failed"] == 10
    assert vl["failed"] >= cut
    assert rc_vllm == (0 if vl["completed"] else 1)
