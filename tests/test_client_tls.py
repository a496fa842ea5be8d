"""https: the Rust client and the CLI against a real TLS server (stdlib http.server wrapped in
``ssl``) with a certificate from a throwaway CA (``trustme``)."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import trustme

from sonic import client

KEY = "sk-tls-test-7f3a"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def _json(self, status: int, doc) -> None:
        body = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v1/models":  # a hosted API: the key is needed here too
            if self.headers.get("Authorization") != f"Bearer {KEY}":
                return self._json(401, {"error": "no key"})
            return self._json(200, {"data": [{"id": "tls-model"}]})
        self._json(404, {"error": "not found"})

    def do_POST(self) -> None:  # noqa: N802
        n = int(self.headers["Content-Length"])
        body = json.loads(self.rfile.read(n))
        self.server.models.append(body.get("model"))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = [{"choices": [{"text": f"t{i} ", "finish_reason": None}]} for i in range(3)]
        events.append({"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 3}})
        for data in [*map(json.dumps, events), "[DONE]"]:
            chunk = f"data: {data}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    cert.configure_cert(ctx)
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    srv.models = []
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    srv.url = f"https://127.0.0.1:{srv.server_address[1]}"
    srv.ca_file = ca_file
    yield srv
    srv.shutdown()
    srv.server_close()


def _config(url: str, insecure: bool) -> client.RunConfig:
    return client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="m",
        requests=[client.RequestSpec(prompt="p", max_tokens=3)] * 2,
        schedule=client.ScheduleSpec(request_rate=None),
        insecure=insecure,
    )


def test_insecure_streams_over_tls_without_checking_the_certificate(tls_server):
    rec = client.run(_config(tls_server.url, insecure=True))
    assert rec.error == [None, None]
    assert [rec.generated_text(i) for i in range(2)] == ["t0 t1 t2 "] * 2
    assert list(rec.completion_tokens) == [3, 3]


def test_an_unknown_certificate_authority_fails_each_request_with_the_reason(tls_server):
    rec = client.run(_config(tls_server.url, insecure=False))
    assert rec.n == 2 and all(e is not None for e in rec.error)
    assert "certificate" in rec.error[0].lower(), rec.error[0]


def test_cli_trusts_the_ca_in_ssl_cert_file_and_discovers_the_model(tls_server, tmp_path: Path):
    env = dict(os.environ, SSL_CERT_FILE=str(tls_server.ca_file), OPENAI_API_KEY=KEY)
    cmd = [
        sys.executable, "-m", "sonic", "--base-url", tls_server.url,
        "--tokenizer", str(Path(__file__).parent / "fixtures" / "tokenizer"),
        "--dataset-name", "random", "--random-input-len", "8", "--random-output-len", "3",
        "--num-prompts", "3", "--disable-tqdm", "--no-collect-server-stats",
        "--save-result", "--result-dir", str(tmp_path), "--result-filename", "tls.json",
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((tmp_path / "tls.json").read_text())
    assert doc["completed"] == 3 and doc["model_id"] == "tls-model"
    assert tls_server.models[-3:] == ["tls-model"] * 3
    assert KEY not in (tmp_path / "tls.json").read_text()
    # Without the CA the same run refuses to trust the server: a clear error, no traceback.
    env.pop("SSL_CERT_FILE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "certificate" in proc.stderr.lower(), proc.stderr
