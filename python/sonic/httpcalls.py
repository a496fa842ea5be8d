"""Small requests beside the run (model discovery, /version, engine /metrics, the prefix-cache
reset) over http or https.

The run itself goes through the Rust client; these few requests use the standard library.
``insecure`` (vLLM's ``--insecure``) skips certificate checks, as the Rust client then does.
A redirect is followed only within the same scheme, host and port: urllib would otherwise
send the request's headers (an API key among them) to whatever host the server names. The
Rust client follows none.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import urlsplit


def origin(url: str) -> str:
    """scheme://host:port of ``url`` (no path or query: they could carry a token)."""
    u = urlsplit(url)
    port = u.port or {"http": 80, "https": 443}.get(u.scheme)
    return f"{u.scheme}://{u.hostname}:{port}"


class _SameOriginRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if origin(newurl) != origin(req.full_url):
            raise urllib.error.HTTPError(
                req.full_url,
                code,
                f"redirect to {origin(newurl)} not followed (headers are never sent to "
                "another address)",
                headers,
                None,
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _context(insecure: bool) -> ssl.SSLContext | None:
    if not insecure:
        return None  # urllib's default: verify against the system's trust store
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def get(
    url: str,
    *,
    timeout: float,
    headers: Mapping[str, str] | None = None,
    insecure: bool = False,
    limit: int | None = None,
    method: str = "GET",
) -> bytes:
    """``method`` (GET) ``url`` (same-origin redirects followed) and return at most
    ``limit + 1`` bytes of its body. Raises OSError (URLError, HTTPError) or ValueError."""
    req = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=_context(insecure)), _SameOriginRedirects()
    )
    with opener.open(req, timeout=timeout) as resp:
        return resp.read() if limit is None else resp.read(limit + 1)
