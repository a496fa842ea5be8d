"""Small HTTP calls the suite makes to a server outside of measured runs: health, models,
version, prefix-cache reset, the response-consistency probe and the ignore_eos probe.

Plain ``urllib`` on purpose: these are a handful of requests, none of them timed for results,
and they must work before the Rust client is involved (and never share its code path).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

# The consistency probe: one fixed, greedy prompt whose answer is short and deterministic.
PROBE_PROMPT = "List the first five prime numbers, separated by commas."
PROBE_MAX_TOKENS = 32
# The ignore_eos probe: a question an engine answers in a word or two, then EOS; with
# ignore_eos honoured it must go on to max_tokens anyway.
EOS_PROBE_PROMPT = "Answer with one word only. Is water wet?"


@dataclass
class Reply:
    status: int  # 0: no HTTP answer (connection refused, timeout)
    doc: Any  # parsed JSON, or None
    error: str | None

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def request(url: str, *, method: str = "GET", body: Any = None, timeout: float = 5.0) -> Reply:
    """One request; never raises for network or HTTP errors (they come back in ``error``)."""
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"Accept": "application/json"}
    if data is not None:
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (configured URL)
            raw = resp.read()
            status = resp.status
    except urllib.error.HTTPError as exc:
        try:
            excerpt = exc.read(300).decode("utf-8", errors="replace").strip()
        except OSError:
            excerpt = ""
        return Reply(exc.code, None, f"HTTP {exc.code}" + (f": {excerpt}" if excerpt else ""))
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Reply(0, None, str(reason) or type(exc).__name__)
    try:
        doc = json.loads(raw.decode("utf-8", errors="replace")) if raw.strip() else None
    except ValueError:
        doc = raw[:200].decode("utf-8", errors="replace")
    return Reply(status, doc, None)


@dataclass
class ModelsInfo:
    ids: list[str]
    max_model_len: int | None


def models(base_url: str, timeout: float = 5.0) -> ModelsInfo | None:
    """``/v1/models`` as (served ids, max_model_len of the first model); None if unusable."""
    r = request(base_url + "/v1/models", timeout=timeout)
    if not r.ok or not isinstance(r.doc, dict) or not isinstance(r.doc.get("data"), list):
        return None
    ids = [str(m.get("id")) for m in r.doc["data"] if isinstance(m, dict) and m.get("id")]
    mml = None
    for m in r.doc["data"]:
        if isinstance(m, dict) and isinstance(m.get("max_model_len"), int):
            mml = int(m["max_model_len"])
            break
    return ModelsInfo(ids=ids, max_model_len=mml)


def llama_props(base_url: str) -> dict[str, int]:
    """llama-server's /props: per-slot context and slot count, as the suite's setting names."""
    r = request(base_url + "/props")
    out: dict[str, int] = {}
    if r.ok and isinstance(r.doc, dict):
        gen = r.doc.get("default_generation_settings")
        if isinstance(gen, dict) and isinstance(gen.get("n_ctx"), int):
            out["max_model_len"] = gen["n_ctx"]
        if isinstance(r.doc.get("total_slots"), int):
            out["max_num_seqs"] = r.doc["total_slots"]
    return out


def version_from(base_url: str, paths: tuple[str, ...]) -> str | None:
    """The first version string any of ``paths`` reports."""
    for path in paths:
        r = request(base_url + path, timeout=3.0)
        if not r.ok:
            continue
        doc = r.doc
        if isinstance(doc, str) and doc.strip():
            return doc.strip()[:100]
        if isinstance(doc, dict):
            for key in ("version", "build_info"):
                if isinstance(doc.get(key), (str, int, float)):
                    return str(doc[key])[:100]
    return None


def reset_prefix_cache(base_url: str, path: str) -> str | None:
    """POST the engine's prefix-cache reset; None on success, else why not."""
    r = request(base_url + path, method="POST", timeout=30.0)
    return None if r.ok else (r.error or f"HTTP {r.status}")


@dataclass
class ProbeAnswer:
    ok: bool
    text: str
    completion_tokens: int | None
    latency_s: float
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "text": self.text,
            "completion_tokens": self.completion_tokens,
            "latency_s": round(self.latency_s, 4),
            "error": self.error,
        }


def probe(
    base_url: str,
    endpoint: str,
    api: str,
    model: str | None,
    *,
    prompt: str = PROBE_PROMPT,
    ignore_eos: bool = False,
) -> ProbeAnswer:
    """Send a fixed greedy prompt, non-streaming, and read the answer and its token count."""
    body: dict[str, Any] = {"max_tokens": PROBE_MAX_TOKENS, "temperature": 0.0, "stream": False}
    if ignore_eos:
        body["ignore_eos"] = True
    if model:
        body["model"] = model
    if api == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    t = time.monotonic()
    r = request(base_url + endpoint, method="POST", body=body, timeout=120.0)
    elapsed = time.monotonic() - t
    if not r.ok or not isinstance(r.doc, dict):
        return ProbeAnswer(False, "", None, elapsed, r.error or "no JSON answer")
    text = ""
    choices = r.doc.get("choices")
    if isinstance(choices, list) and choices and isinstance(choices[0], dict):
        c = choices[0]
        if isinstance(c.get("text"), str):
            text = c["text"]
        elif isinstance(c.get("message"), dict) and isinstance(c["message"].get("content"), str):
            text = c["message"]["content"]
    usage = r.doc.get("usage")
    tokens = None
    if isinstance(usage, dict) and isinstance(usage.get("completion_tokens"), int):
        tokens = usage["completion_tokens"]
    if not choices:
        return ProbeAnswer(False, "", tokens, elapsed, "the answer has no choices")
    return ProbeAnswer(True, text, tokens, elapsed, None)
