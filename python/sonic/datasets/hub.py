"""Fetch one file from the Hugging Face Hub, turning every failure into a one-line SonicError.

Shared by the tokenizer loader and the datasets that auto-download (sharegpt, code_debug). The
messages say what went wrong and how to pass a local path instead; they never include the
token (``HF_TOKEN`` is read by ``huggingface_hub`` itself and never touched here).
"""

from __future__ import annotations

import os

from sonic.errors import SonicError

_TRUTHY = {"1", "true", "yes", "on"}


def offline_requested() -> bool:
    """True when the user asked for offline mode (read at call time, not at import time)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUTHY
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def _error_classes() -> dict[str, type[BaseException]]:
    """The huggingface_hub exception classes, wherever this version defines them."""
    classes: dict[str, type[BaseException]] = {}
    names = (
        "LocalEntryNotFoundError",
        "EntryNotFoundError",
        "GatedRepoError",
        "RepositoryNotFoundError",
        "RevisionNotFoundError",
        "HfHubHTTPError",
        "OfflineModeIsEnabled",
    )
    for module_name in ("huggingface_hub.errors", "huggingface_hub.utils"):
        try:
            module = __import__(module_name, fromlist=list(names))
        except ImportError:
            continue
        for name in names:
            cls = getattr(module, name, None)
            if isinstance(cls, type) and name not in classes:
                classes[name] = cls
    return classes


def fetch_hub_file(
    repo_id: str,
    filename: str,
    *,
    repo_type: str | None = None,
    revision: str | None = None,
    local_hint: str,
    local_files_only: bool | None = None,
) -> str:
    """Download (or find in the local cache) ``filename`` of ``repo_id``; return its local path.

    ``local_hint`` completes the error message, e.g. ``"pass --dataset-path FILE"``.
    """
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise SonicError(
            f"{repo_id}/{filename} must be downloaded from the Hugging Face Hub but "
            f"huggingface_hub is not installed (pip install huggingface_hub), or {local_hint}"
        ) from None
    if local_files_only is None:
        local_files_only = offline_requested()
    what = f"'{filename}' from Hugging Face Hub {repo_type or 'model'} repo '{repo_id}'"
    errors = _error_classes()

    def is_a(exc: BaseException, *names: str) -> bool:
        return any(name in errors and isinstance(exc, errors[name]) for name in names)

    try:
        return str(
            hf_hub_download(
                repo_id,
                filename,
                repo_type=repo_type,
                revision=revision,
                local_files_only=local_files_only,
            )
        )
    except Exception as exc:  # mapped to one line below; the original is never shown
        if is_a(exc, "LocalEntryNotFoundError", "OfflineModeIsEnabled"):
            reason = "offline or unreachable, and not in the local cache"
        elif is_a(exc, "GatedRepoError"):
            reason = "the repo is gated: accept its terms on huggingface.co and set HF_TOKEN"
        elif is_a(exc, "RepositoryNotFoundError"):
            reason = "no such repo, or it is private (set HF_TOKEN)"
        elif is_a(exc, "RevisionNotFoundError"):
            reason = f"no revision {revision!r}"
        elif is_a(exc, "EntryNotFoundError"):
            reason = "the repo has no such file"
        elif is_a(exc, "HfHubHTTPError"):
            status = getattr(getattr(exc, "response", None), "status_code", None)
            reason = f"HTTP error {status}" if status else "HTTP error"
        elif isinstance(exc, (OSError, ValueError)):
            reason = f"{type(exc).__name__} (network unreachable?)"
        else:
            raise
        raise SonicError(f"could not fetch {what}: {reason}; {local_hint}") from None


_SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HUGGINGFACEHUB_API_TOKEN", "OPENAI_API_KEY")


def scrub_secrets(text: str) -> str:
    """``text`` with the values of token environment variables masked (for third-party errors)."""
    for var in _SECRET_VARS:
        value = os.environ.get(var, "")
        if len(value) >= 4:
            text = text.replace(value, "***")
    return text
