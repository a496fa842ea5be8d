"""No secret reaches a file or the console, end to end.

``OPENAI_API_KEY``, ``HF_TOKEN``, a ``--header`` value and a suite engine's ``env`` secret are
set to marker strings; ``sonic run`` (both dialects, against a server that echoes every request
header back in its error bodies, and against the sim with injected failures), ``sonic suite
run``, ``sonic validate`` and ``sonic report`` run with them; every file written under the
test's directory and all console output are scanned for the markers.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simproc import sim_process

ROOT = Path(__file__).resolve().parent.parent
TOKENIZER = ROOT / "tests" / "fixtures" / "tokenizer"
MARKERS = {
    "OPENAI_API_KEY": "sk-marker-openai-5d1e9a",
    "HF_TOKEN": "hf_markerHfToken7c3b2",
    "header": "marker-header-value-81f0",
    "suite_env": "marker-suite-env-4a6d",
}


class _Echo(BaseHTTPRequestHandler):
    """Answers every request 401 with all its request headers in the body (as some gateways
    do), and /v1/models with one model."""

    protocol_version = "HTTP/1.1"

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):  # noqa: N802 (stdlib naming)
        if self.path.startswith("/v1/models"):
            self._answer(200, b'{"data": [{"id": "m"}]}')
        else:
            self._answer(401, str(dict(self.headers)).encode())

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer(401, ("invalid key, got " + str(dict(self.headers))).encode())

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def echo_url() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def _sonic(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["OPENAI_API_KEY"] = MARKERS["OPENAI_API_KEY"]
    env["HF_TOKEN"] = MARKERS["HF_TOKEN"]
    env["SONIC_TEST_SUITE_SECRET"] = MARKERS["suite_env"]
    return subprocess.run(
        [sys.executable, "-m", "sonic", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=env,
    )


def _leaks(text: str) -> list[str]:
    return [name for name, marker in MARKERS.items() if marker in text]


def test_no_secret_in_any_file_or_output(tmp_path, echo_url):
    console: list[str] = []
    runs = tmp_path / "runs"
    runs.mkdir()
    header = ["--header", f"X-Api-Key={MARKERS['header']}"]
    common = [
        "--model", "m", "--tokenizer", str(TOKENIZER), "--dataset-name", "random",
        "--random-input-len", "16", "--random-output-len", "4", "--num-prompts", "6",
        "--request-rate", "inf", "--save-result", "--save-detailed", "--result-dir", str(runs),
        "--metadata", f"note={MARKERS['header']}", "--disable-tqdm", *header,
    ]  # fmt: skip

    def run_both_dialects(url: str, name: str) -> None:
        for compat in ("vllm", "max"):
            cp = _sonic(
                "run", "--compat", compat, "--backend", "openai", "--base-url", url,
                "--result-filename", f"{name}-{compat}.json", "--always-save-result", *common,
                cwd=tmp_path,
            )  # fmt: skip
            console.append(cp.stdout + cp.stderr)
            assert "Traceback" not in cp.stderr, cp.stderr

    # Every request fails and the server echoes the key and the header back.
    run_both_dialects(echo_url, "echo")
    # The sim with injected failures: a run that partly fails.
    with sim_process("--fail-500", "0.3", "--fail-reset", "0.2") as url:
        run_both_dialects(url, "sim")
    # A suite whose engine gets a secret through its env (the manifest records the name).
    suite = tmp_path / "suite.toml"
    suite.write_text(
        f"""
[suite]
name = "secrets"
tokenizer = "{TOKENIZER}"
temperature = 0.0
ignore_eos = true

[engines.sim-a]
preset = "sim"
profile = "fast-decode"
env = {{ API_KEY = "${{SONIC_TEST_SUITE_SECRET}}" }}

[scenarios.small]
dataset = "random"
input_len = 32
output_len = 4
request_rates = [20]
num_prompts = 6
""",
        encoding="utf-8",
    )
    out = tmp_path / "results"
    for argv in (
        ["validate", str(suite), "--output", str(tmp_path / "validation.json")],
        ["suite", "run", str(suite), "--output-dir", str(out)],
    ):
        cp = _sonic(*argv, cwd=tmp_path)
        console.append(cp.stdout + cp.stderr)
        assert cp.returncode == 0, cp.stdout + cp.stderr
    (results,) = [p for p in out.iterdir() if p.is_dir()]
    manifest = json.loads((results / "manifest.json").read_text())
    assert manifest["engines"]["sim-a"]["env"] == ["API_KEY"]  # the secret went in, by name
    cp = _sonic("report", str(results), cwd=tmp_path)
    console.append(cp.stdout + cp.stderr)
    assert cp.returncode == 0, cp.stdout + cp.stderr

    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != suite]
    assert len(written) > 10, written  # results, raw records, telemetry, manifest, report, logs
    assert any(p.suffix == ".jsonl" for p in written) and any(
        p.name == "report.html" for p in written
    )
    for p in written:
        leaks = _leaks(p.read_bytes().decode("utf-8", errors="replace"))
        assert not leaks, (p, leaks)
    for text in console:
        assert not _leaks(text), text[-2000:]
    # The echoing server really did receive the key and the header (so the scan means something).
    echoed = (runs / "echo-vllm.json").read_text()
    assert "<redacted>" in echoed
