"""Redirect policy: nothing sonic sends (above all an API key or a custom header) reaches an
address other than the one it was given. Two real local servers: the one named answers every
request with a redirect to the other, which records whatever reaches it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from sonic import client, httpcalls

SECRET = "sk-redirect-secret-4242"


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[dict[str, str]]
    target: str  # where to redirect ("" = answer 200 and record)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if self.target and self.path != "/same":
            self.send_response(307)
            location = "/same" if self.path == "/local" else self.target + self.path
            self.send_header("Location", location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.seen.append({"path": self.path, **dict(self.headers)})
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _handle  # noqa: N815 (stdlib naming)

    def log_message(self, *args) -> None:
        pass


def _serve(target: str) -> tuple[ThreadingHTTPServer, str, list[dict[str, str]]]:
    seen: list[dict[str, str]] = []
    handler = type("H", (_Recorder,), {"seen": seen, "target": target})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}", seen


@pytest.fixture()
def pair() -> Iterator[tuple[str, str, list, list]]:
    """(url of the redirecting server, url of the other, what each recorded)."""
    other, other_url, other_seen = _serve("")
    named, named_url, named_seen = _serve(other_url)
    yield named_url, other_url, named_seen, other_seen
    for srv in (named, other):
        srv.shutdown()
        srv.server_close()


def test_the_run_refuses_a_redirect_and_names_its_origin(pair):
    named_url, other_url, _, other_seen = pair
    cfg = client.RunConfig(
        base_url=named_url,
        endpoint="/v1/completions",
        api="completions",
        model="m",
        headers=[("Authorization", f"Bearer {SECRET}"), ("X-Api-Key", SECRET)],
        requests=[client.RequestSpec(prompt="x", max_tokens=1) for _ in range(3)],
        timeout_s=10.0,
    )
    rec = client.run(cfg)
    assert other_seen == []  # nothing, headers or otherwise, reached the other server
    for err in rec.error:
        assert err is not None and err.startswith("HTTP 307: redirect to " + other_url)
        assert "not followed" in err and SECRET not in err and "/v1/" not in err


def test_side_requests_follow_only_same_origin_redirects(pair):
    named_url, other_url, named_seen, other_seen = pair
    headers = {"Authorization": f"Bearer {SECRET}"}
    with pytest.raises(OSError, match=f"redirect to {other_url} not followed"):
        httpcalls.get(named_url + "/metrics", timeout=5, headers=headers)
    assert other_seen == []
    # A redirect within the same server (a trailing slash, a moved path) is followed.
    assert httpcalls.get(named_url + "/local", timeout=5, headers=headers) == b"{}"
    assert [s["path"] for s in named_seen] == ["/same"]
