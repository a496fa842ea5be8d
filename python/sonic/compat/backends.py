"""Backend names and how an endpoint picks the API a request speaks.

As in MAX 2026, the endpoint's suffix decides the request format, not the backend name: the
name only chooses a default endpoint and labels the result. MAX August 2025's habit of turning
``vllm`` into ``vllm-chat`` on a chat endpoint is kept (where the dialect asks for it), without
that script's "vllm-chat-chat" failure.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

from sonic.errors import SonicError

# API kinds the client can speak, with the body field that carries the prompt.
API_KINDS = ("completions", "chat", "tgi", "trtllm")
PROMPT_FIELD = {
    "completions": "prompt",
    "chat": "messages",
    "tgi": "inputs",
    "trtllm": "text_input",
}

COMPLETIONS_ENDPOINT = "/v1/completions"
CHAT_ENDPOINT = "/v1/chat/completions"
TGI_ENDPOINT = "/generate_stream"
TRTLLM_ENDPOINT = "/v2/models/ensemble/generate_stream"

# Every accepted backend name and its default endpoint (plus MAX 2026's
# atom-chat). Names that speak OpenAI's APIs default to completions unless they are "-chat".
BACKENDS: dict[str, str] = {
    "openai": COMPLETIONS_ENDPOINT,
    "openai-chat": CHAT_ENDPOINT,
    "vllm": COMPLETIONS_ENDPOINT,
    "vllm-chat": CHAT_ENDPOINT,
    "modular": COMPLETIONS_ENDPOINT,
    "modular-chat": CHAT_ENDPOINT,
    "sglang": COMPLETIONS_ENDPOINT,
    "sglang-chat": CHAT_ENDPOINT,
    "trt-llm": TRTLLM_ENDPOINT,
    "tensorrt-llm": TRTLLM_ENDPOINT,
    "trtllm": TRTLLM_ENDPOINT,
    "trtllm-chat": CHAT_ENDPOINT,
    "tgi": TGI_ENDPOINT,
    "lmdeploy": COMPLETIONS_ENDPOINT,
    "scalellm": COMPLETIONS_ENDPOINT,
    "llama.cpp": COMPLETIONS_ENDPOINT,
    "atom": COMPLETIONS_ENDPOINT,
    "atom-chat": CHAT_ENDPOINT,
    "mach": COMPLETIONS_ENDPOINT,
    "mcloud": COMPLETIONS_ENDPOINT,
}

# Where each engine resets its prefix cache (MAX's --flush-prefix-cache map).
PREFIX_CACHE_RESET: dict[str, str] = {
    **dict.fromkeys(
        ("modular", "modular-chat", "vllm", "vllm-chat", "atom", "atom-chat", "mach"),
        "/reset_prefix_cache",
    ),
    "sglang": "/flush_cache",
    "sglang-chat": "/flush_cache",
}

# Backends of either tool that measure something other than streamed text generation.
REFUSED_BACKENDS: dict[str, str] = {
    "openai-audio": "audio transcription benchmarks are not implemented",
    "deepspeed-mii": "DeepSpeed-MII's non-streaming API is not implemented",
    "openai-embeddings": "pooling (embedding) benchmarks are not implemented",
    "openai-embeddings-chat": "pooling (embedding) benchmarks are not implemented",
    "openai-embeddings-clip": "pooling (embedding) benchmarks are not implemented",
    "openai-embeddings-vlm2vec": "pooling (embedding) benchmarks are not implemented",
    "infinity-embeddings": "pooling (embedding) benchmarks are not implemented",
    "infinity-embeddings-clip": "pooling (embedding) benchmarks are not implemented",
    "vllm-pooling": "pooling benchmarks are not implemented",
    "vllm-rerank": "rerank benchmarks are not implemented",
}

# Endpoint suffixes of either tool that are not streamed text generation.
REFUSED_ENDPOINT_SUFFIXES = {
    "/v1/responses": "the Responses API (MAX pixel tasks) is not implemented",
    "/v1/images/generations": "image generation is not implemented",
    "/v1/videos": "video generation is not implemented",
    "/v1/videos/sync": "video generation is not implemented",
    "/v1/embeddings": "pooling (embedding) benchmarks are not implemented",
    "/v1/audio/transcriptions": "audio transcription benchmarks are not implemented",
    "/v1/audio/translations": "audio transcription benchmarks are not implemented",
}


def check_backend(name: str) -> str:
    """Normalise and validate a ``--backend`` value."""
    key = name.strip().lower()
    if key in BACKENDS:
        return key
    if key in REFUSED_BACKENDS:
        raise SonicError(f"--backend {key} is refused: {REFUSED_BACKENDS[key]}")
    close = difflib.get_close_matches(key, list(BACKENDS), n=1)
    hint = f"; did you mean {close[0]}?" if close else f" (accepted: {', '.join(BACKENDS)})"
    raise SonicError(f"unknown --backend {name!r}{hint}")


def default_endpoint(backend: str) -> str:
    """The endpoint used when ``--endpoint`` is absent: chat for ``*-chat``, TGI/TRT natives."""
    return BACKENDS[check_backend(backend)]


def route_endpoint(endpoint: str) -> str:
    """The API kind an endpoint speaks, decided by its suffix (MAX 2026's rule).

    ``.../chat/completions`` -> chat; ``.../completions`` or ``.../profile`` -> completions;
    ``/v2/models/<name>/generate_stream`` -> trtllm; any other ``.../generate_stream`` -> tgi.
    """
    path = endpoint.split("?", 1)[0].rstrip("/")
    for suffix, why in REFUSED_ENDPOINT_SUFFIXES.items():
        if path.endswith(suffix):
            raise SonicError(f"--endpoint {endpoint} is refused: {why}")
    if path.endswith("chat/completions"):
        return "chat"
    if path.endswith("completions") or path.endswith("profile"):
        return "completions"
    if path.endswith("generate_stream"):
        return "trtllm" if path.startswith("/v2/models/") else "tgi"
    raise SonicError(
        f"--endpoint {endpoint} is not supported: it must end with chat/completions, "
        "completions, profile or generate_stream"
    )


def chat_variant(backend: str) -> str:
    """The ``-chat`` sibling of a backend (MAX August 2025's resolution), or the name itself
    when it has none or already is one (so ``vllm-chat`` never becomes ``vllm-chat-chat``)."""
    if backend.endswith("-chat"):
        return backend
    sibling = f"{backend}-chat"
    return sibling if sibling in BACKENDS else backend


@dataclass(frozen=True)
class Route:
    """A resolved backend/endpoint pair."""

    backend: str  # after -chat resolution; used for the default label and result filename
    requested_backend: str  # as given (or the profile default)
    endpoint: str
    api: str  # one of API_KINDS


def resolve_route(backend: str, endpoint: str | None) -> Route:
    """Pick the endpoint (explicit, else the backend's default), route it, and name the backend.

    A chat endpoint turns ``vllm`` into ``vllm-chat`` (MAX August 2025). A ``-chat`` backend
    with an explicit non-chat endpoint is contradictory and refused rather than guessed.
    """
    requested = check_backend(backend)
    chosen = endpoint if endpoint is not None else default_endpoint(requested)
    if not chosen.startswith("/"):
        raise SonicError(f"--endpoint must start with '/', got {chosen!r}")
    api = route_endpoint(chosen)
    resolved = requested
    if api == "chat":
        resolved = chat_variant(requested)
    elif requested.endswith("-chat"):
        raise SonicError(
            f"--backend {requested} expects a chat endpoint (e.g. {CHAT_ENDPOINT}), "
            f"but --endpoint {chosen} speaks the {api} API; drop the -chat suffix or the endpoint"
        )
    return Route(backend=resolved, requested_backend=requested, endpoint=chosen, api=api)
