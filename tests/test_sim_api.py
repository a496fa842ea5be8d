"""The simulated engine from Python (``sonic.sim.start``) and the CLI's error handling."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request

import pytest


def test_start_in_process_and_stop_frees_port(tokenizer_dir):
    from sonic import sim

    with sim.start(profile="fast-decode", tokenizer=str(tokenizer_dir)) as server:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.host == "127.0.0.1"
        with urllib.request.urlopen(server.url + "/version", timeout=10) as r:
            assert json.load(r)["profile"] == "fast-decode"
        req = urllib.request.Request(
            server.url + "/v1/completions",
            data=json.dumps({"prompt": "hi", "max_tokens": 4, "ignore_eos": True}).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            assert json.load(r)["usage"]["completion_tokens"] == 4
        port = server.port
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
    server.stop()  # idempotent
    with sim.start(port=port) as again:  # the port is free again
        assert again.port == port


def test_start_refuses_bad_options():
    from sonic import _core, sim
    from sonic.errors import SonicError

    with pytest.raises(_core.CoreError, match="max_num_seqs"):
        sim.start(max_num_seqs=0)
    with pytest.raises(_core.CoreError, match="profile"):
        sim.start(profile="nope")
    with pytest.raises(_core.CoreError, match="tokenizer"):
        sim.start(tokenizer="/does/not/exist")
    with pytest.raises(SonicError, match="bogus"):
        sim.start(bogus=1)


def test_options_json_leaves_out_unset():
    from sonic.sim import SimOptions

    doc = json.loads(SimOptions(ttft_ms=5, itl_ms=1).to_json())
    assert doc["ttft_ms"] == 5 and "max_num_seqs" not in doc


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--port", "x"], "--port"),
        (["--fail-reset", "3"], "fail_reset"),
        (["--ttft-ms", "5"], "itl_ms"),
        (["--profile", "turbo"], "--profile"),
        (["--bogus"], "--bogus"),
    ],
)
def test_cli_bad_option_is_one_line_exit_2(args, needle):
    cmd = [sys.executable, "-m", "sonic", "sim", "--port", "0", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("sonic sim: error:"), r.stderr
    assert needle in lines[0]
    assert "Traceback" not in r.stderr


def test_cli_help_explains_flags():
    r = subprocess.run(
        [sys.executable, "-m", "sonic", "sim", "--help"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0
    for flag in ("--ttft-ms", "--fail-stall", "--max-num-batched-tokens", "--profile", "--seed"):
        assert flag in r.stdout
