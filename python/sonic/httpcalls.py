"""Small requests beside the run (model discovery, /version, engine /metrics, the prefix-cache
reset) over http or https.

The run itself goes through the Rust client; these few requests use the standard library.
``insecure`` (vLLM's ``--insecure``) skips certificate checks, as the Rust client then does.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Mapping


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
    """``method`` (GET) ``url`` (redirects followed) and return at most ``limit + 1`` bytes of
    its body. Raises OSError (URLError, HTTPError) or ValueError."""
    req = urllib.request.Request(url, headers=dict(headers or {}), method=method)
    with urllib.request.urlopen(req, timeout=timeout, context=_context(insecure)) as resp:  # noqa: S310
        return resp.read() if limit is None else resp.read(limit + 1)
