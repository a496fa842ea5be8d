"""Keep credentials out of everything we write: redact sensitive arguments by name and scrub
known secret values (API keys, HF tokens, header values) from the serialized text."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

REDACTED = "<redacted>"
_SENSITIVE_ARG = re.compile(
    r"(header|api[_-]?key|secret|password|passwd|credential|authorization|auth[_-]?token"
    r"|(^|_)token$|^hf[_-]?token)",
    re.IGNORECASE,
)
_SENSITIVE_ENV = re.compile(r"(TOKEN|API_?KEY|SECRET|PASSWORD|CREDENTIAL)", re.IGNORECASE)
_MIN_SECRET_LEN = 8  # shorter values would scrub ordinary words


def is_sensitive_arg(name: str) -> bool:
    """True for argument names that may carry credentials (headers, keys, tokens)."""
    return bool(_SENSITIVE_ARG.search(name))


def redact_args(args: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``args`` with the values of sensitive arguments replaced."""
    return {
        k: (REDACTED if is_sensitive_arg(k) and v not in (None, "", [], {}) else v)
        for k, v in args.items()
    }


def collect_secrets(
    extra: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> list[str]:
    """Secret values to scrub: env vars named like tokens/keys/secrets, plus ``extra``
    (e.g. ``--header`` values). Longest first, so a secret containing another is scrubbed whole."""
    env = os.environ if environ is None else environ
    found = {v for k, v in env.items() if _SENSITIVE_ENV.search(k) and v}
    found.update(s for s in extra if s)
    return sorted((s for s in found if len(s) >= _MIN_SECRET_LEN), key=len, reverse=True)


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every secret (raw and JSON-escaped forms) in serialized text."""
    for s in secrets:
        text = text.replace(s, REDACTED)
        escaped = json.dumps(s)[1:-1]
        if escaped != s:
            text = text.replace(escaped, REDACTED)
    return text
