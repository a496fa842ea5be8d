"""Backend names, endpoint-suffix routing and MAX August 2025's `-chat` resolution."""

from __future__ import annotations

import pytest

from sonic.compat import parse_run_args
from sonic.compat.backends import (
    BACKENDS,
    chat_variant,
    default_endpoint,
    resolve_route,
    route_endpoint,
)
from sonic.errors import SonicError


@pytest.mark.parametrize(
    "endpoint,api",
    [
        ("/v1/completions", "completions"),
        ("/v1/chat/completions", "chat"),
        ("/proxy/v1/chat/completions/", "chat"),
        ("/profile", "completions"),
        ("/v1/completions?x=1", "completions"),
        ("/generate_stream", "tgi"),
        ("/v2/models/ensemble/generate_stream", "trtllm"),
        ("/v2/models/llama/generate_stream", "trtllm"),
    ],
)
def test_route_by_suffix(endpoint, api):
    assert route_endpoint(endpoint) == api


@pytest.mark.parametrize(
    "endpoint,fragment",
    [
        ("/v1/responses", "Responses API"),
        ("/v1/images/generations", "image generation"),
        ("/v1/embeddings", "embedding"),
        ("/v1/models", "must end with"),
        ("/generate", "must end with"),
    ],
)
def test_unroutable_endpoints(endpoint, fragment):
    with pytest.raises(SonicError, match=fragment):
        route_endpoint(endpoint)


@pytest.mark.parametrize(
    "backend,endpoint",
    [
        ("openai", "/v1/completions"),
        ("vllm", "/v1/completions"),
        ("modular", "/v1/completions"),
        ("openai-chat", "/v1/chat/completions"),
        ("vllm-chat", "/v1/chat/completions"),
        ("modular-chat", "/v1/chat/completions"),
        ("sglang-chat", "/v1/chat/completions"),
        ("trtllm-chat", "/v1/chat/completions"),
        ("tgi", "/generate_stream"),
        ("trt-llm", "/v2/models/ensemble/generate_stream"),
        ("tensorrt-llm", "/v2/models/ensemble/generate_stream"),
        ("llama.cpp", "/v1/completions"),
    ],
)
def test_default_endpoint(backend, endpoint):
    assert default_endpoint(backend) == endpoint


def test_every_default_endpoint_routes():
    for backend in BACKENDS:
        api = route_endpoint(default_endpoint(backend))
        assert (api == "chat") == backend.endswith("-chat"), backend


@pytest.mark.parametrize(
    "backend,endpoint,resolved,api",
    [
        ("vllm", "/v1/chat/completions", "vllm-chat", "chat"),
        ("vllm-chat", "/v1/chat/completions", "vllm-chat", "chat"),  # no vllm-chat-chat
        ("openai", "/v1/chat/completions", "openai-chat", "chat"),
        ("modular", "/v1/chat/completions", "modular-chat", "chat"),
        ("sglang", "/v1/chat/completions", "sglang-chat", "chat"),
        ("tgi", "/v1/chat/completions", "tgi", "chat"),  # no tgi-chat sibling
        ("trt-llm", "/v1/completions", "trt-llm", "completions"),
        ("openai-chat", None, "openai-chat", "chat"),
        ("OpenAI", None, "openai", "completions"),
    ],
)
def test_chat_resolution(backend, endpoint, resolved, api):
    route = resolve_route(backend, endpoint)
    assert (route.backend, route.api) == (resolved, api)


def test_chat_variant_is_idempotent():
    for backend in BACKENDS:
        once = chat_variant(backend)
        assert chat_variant(once) == once
        assert not once.endswith("-chat-chat")


def test_chat_backend_with_completions_endpoint_is_refused():
    with pytest.raises(SonicError, match="expects a chat endpoint"):
        resolve_route("openai-chat", "/v1/completions")


@pytest.mark.parametrize(
    "backend,fragment",
    [
        ("openai-audio", "audio"),
        ("vllm-pooling", "pooling"),
        ("opneai", "did you mean openai?"),
        ("nonsense-server", "accepted:"),
    ],
)
def test_bad_backends(backend, fragment):
    with pytest.raises(SonicError, match=fragment):
        parse_run_args(["--backend", backend])


def test_endpoint_must_be_a_path():
    with pytest.raises(SonicError, match="must start with '/'"):
        parse_run_args(["--endpoint", "v1/completions"])


def test_endpoint_type_alias():
    assert parse_run_args(["--endpoint-type", "openai-chat"]).target.api == "chat"
