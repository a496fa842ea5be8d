"""The run's tokenizer: HF ``tokenizers`` (tokenizer.json) plus the files beside it.

Token counts must match what vLLM's and MAX's clients compute with ``transformers``, so this
module reproduces the fast-tokenizer behaviour that matters for counting and prompt building:

- ``encode(text, add_special_tokens=True)`` runs the tokenizer.json post-processor (BOS for
  Llama-style tokenizers), as ``tokenizer(text).input_ids`` does; ``False`` is MAX's output
  count mode.
- ``decode`` keeps special tokens by default and applies ``clean_up_tokenization_spaces`` only
  when tokenizer_config.json asks for it, as ``PreTrainedTokenizerFast.decode`` does.
- ``vocab_size`` excludes added tokens and ``special_ids`` follows ``all_special_ids``
  (the special tokens *named* in tokenizer_config.json), which the random dataset relies on.
- Chat templates render with a sandboxed jinja2 environment configured like transformers'.

``tokenizers``, ``jinja2`` and ``huggingface_hub`` are imported only when needed so that
``python -m sonic --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sonic.errors import SonicError

# transformers' "no limit configured" sentinel for model_max_length (int(1e30)).
VERY_LARGE_INTEGER = int(1e30)

_SPECIAL_KEYS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
)

_LOCAL_HINT = "pass --tokenizer with a local directory that contains tokenizer.json (or the file)"


def _token_content(value: Any) -> str | None:
    """tokenizer_config.json stores special tokens as strings or serialized AddedTokens."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _clean_up_tokenization(text: str) -> str:
    """transformers' ``clean_up_tokenization``: drop spaces before punctuation/contractions."""
    for before, after in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        text = text.replace(before, after)
    return text


class Tokenizer:
    """A loaded tokenizer. Build it with :func:`load_tokenizer`."""

    def __init__(
        self,
        backend: Any,
        *,
        name_or_path: str,
        config: dict[str, Any] | None = None,
        chat_template: str | None = None,
    ) -> None:
        self._tok = backend
        # transformers never truncates or pads unless asked; tokenizer.json may configure both.
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name_or_path = name_or_path
        self.config: dict[str, Any] = dict(config or {})
        self.chat_template = chat_template
        self._special_tokens = {
            key: content
            for key in _SPECIAL_KEYS
            if (content := _token_content(self.config.get(key))) is not None
        }
        self._clean_up = bool(self.config.get("clean_up_tokenization_spaces", False))
        self._special_ids = self._compute_special_ids()

    def __repr__(self) -> str:
        return f"Tokenizer({self.name_or_path!r}, vocab_size={self.vocab_size})"

    # -- encoding -------------------------------------------------------------------------------
    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return list(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def encode_batch(self, texts: list[str], add_special_tokens: bool = False) -> list[list[int]]:
        """Many texts at once (parallel in Rust): used for whole-dataset length scans."""
        encodings = self._tok.encode_batch(list(texts), add_special_tokens=add_special_tokens)
        return [list(e.ids) for e in encodings]

    def count(self, text: str, add_special_tokens: bool = False) -> int:
        return len(self._tok.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        text = self._tok.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
        return _clean_up_tokenization(text) if self._clean_up else text

    def num_special_tokens_to_add(self) -> int:
        """Tokens the post-processor adds to a single sequence (e.g. 1 for a BOS)."""
        return int(self._tok.num_special_tokens_to_add(False))

    # -- vocabulary -----------------------------------------------------------------------------
    @property
    def vocab_size(self) -> int:
        """Base vocabulary size, without added tokens (``PreTrainedTokenizerFast.vocab_size``)."""
        return int(self._tok.get_vocab_size(with_added_tokens=False))

    def __len__(self) -> int:
        return int(self._tok.get_vocab_size(with_added_tokens=True))

    def token_to_id(self, token: str) -> int | None:
        return self._tok.token_to_id(token)

    def _compute_special_ids(self) -> list[int]:
        names = list(self._special_tokens.values())
        extra = self.config.get("additional_special_tokens") or []
        names += [c for c in (_token_content(t) for t in extra) if c is not None]
        if not self.config:
            # A bare tokenizer.json names no roles: every added special token counts.
            decoder = self._tok.get_added_tokens_decoder()
            return sorted(i for i, tok in decoder.items() if tok.special)
        ids = {i for i in (self._tok.token_to_id(n) for n in names) if i is not None}
        return sorted(ids)

    @property
    def special_ids(self) -> list[int]:
        """Ids of the special tokens (``all_special_ids``), sorted."""
        return list(self._special_ids)

    @property
    def bos_token(self) -> str | None:
        return self._special_tokens.get("bos_token")

    @property
    def eos_token(self) -> str | None:
        return self._special_tokens.get("eos_token")

    @property
    def bos_id(self) -> int | None:
        return None if self.bos_token is None else self._tok.token_to_id(self.bos_token)

    @property
    def eos_id(self) -> int | None:
        return None if self.eos_token is None else self._tok.token_to_id(self.eos_token)

    @property
    def model_max_length(self) -> int:
        """tokenizer_config.json's limit, or transformers' int(1e30) "unbounded" sentinel."""
        value = self.config.get("model_max_length")
        try:
            return int(value) if value is not None else VERY_LARGE_INTEGER
        except (TypeError, ValueError, OverflowError):
            return VERY_LARGE_INTEGER

    # -- chat template --------------------------------------------------------------------------
    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_template)

    def apply_chat_template(
        self,
        messages: list[dict[str, Any]],
        add_generation_prompt: bool = True,
        **kwargs: Any,
    ) -> str:
        """Render ``messages`` to text with the tokenizer's chat template (never tokenized)."""
        if not self.chat_template:
            raise SonicError(
                f"tokenizer {self.name_or_path} has no chat template (none in "
                "tokenizer_config.json or chat_template.jinja); use a chat model's tokenizer "
                "or a dataset/option that does not template prompts"
            )
        template = _compile_template(self.chat_template)
        context: dict[str, Any] = dict(self._special_tokens)
        context.update(kwargs)
        try:
            return template.render(
                messages=messages, add_generation_prompt=add_generation_prompt, **context
            )
        except Exception as exc:  # jinja2 errors and raise_exception() from the template
            message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise SonicError(
                f"chat template of {self.name_or_path} failed to render: {message}"
            ) from None


_TEMPLATE_CACHE: dict[str, Any] = {}


def _compile_template(source: str) -> Any:
    """Compile like transformers: sandboxed, trim/lstrip blocks, loop controls, tojson."""
    cached = _TEMPLATE_CACHE.get(source)
    if cached is not None:
        return cached
    try:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment
    except ImportError:
        raise SonicError("chat templates need jinja2: pip install jinja2") from None

    def raise_exception(message: str) -> None:
        raise jinja2.exceptions.TemplateError(message)

    def tojson(value: Any, ensure_ascii: bool = False, indent: Any = None, **kw: Any) -> str:
        return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, **kw)

    def strftime_now(fmt: str) -> str:
        from datetime import datetime

        return datetime.now().strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    try:
        compiled = env.from_string(source)
    except jinja2.exceptions.TemplateSyntaxError as exc:
        raise SonicError(f"chat template does not compile: {exc.message}") from None
    _TEMPLATE_CACHE[source] = compiled
    return compiled


# -- loading --------------------------------------------------------------------------------------
def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise SonicError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise SonicError(f"{what} {path} is not valid JSON (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise SonicError(f"{what} {path} must contain a JSON object")
    return data


def _pick_template(value: Any) -> str | None:
    """``chat_template`` is a string, or a list of named templates (use "default")."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        named = {t.get("name"): t.get("template") for t in value if isinstance(t, dict)}
        chosen = named.get("default")
        return chosen if isinstance(chosen, str) else None
    return None


def _from_files(
    tokenizer_json: Path,
    config_json: Path | None,
    template_file: Path | None,
    name: str,
) -> Tokenizer:
    try:
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        raise SonicError("the tokenizers package is required: pip install tokenizers") from None
    try:
        backend = HFTokenizer.from_file(str(tokenizer_json))
    except Exception as exc:  # tokenizers raises a bare Exception for unparsable files
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SonicError(f"cannot load tokenizer {tokenizer_json}: {first}") from None
    config = _read_json(config_json, "tokenizer config") if config_json else {}
    template = None
    if template_file is not None:
        try:
            template = template_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise SonicError(f"cannot read {template_file}: {exc.strerror or exc}") from None
    if template is None:
        template = _pick_template(config.get("chat_template"))
    return Tokenizer(backend, name_or_path=name, config=config, chat_template=template)


def _from_directory(directory: Path, name: str) -> Tokenizer:
    tokenizer_json = directory / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise SonicError(
            f"{directory} has no tokenizer.json; sonic needs a fast tokenizer (save one with "
            "transformers: AutoTokenizer.from_pretrained(...).save_pretrained(DIR))"
        )
    config = directory / "tokenizer_config.json"
    template = directory / "chat_template.jinja"
    return _from_files(
        tokenizer_json,
        config if config.is_file() else None,
        template if template.is_file() else None,
        name,
    )


def _looks_like_path(name: str) -> bool:
    """Hub ids are ``name`` or ``org/name``; anything else that does not exist is a bad path."""
    return (
        name.startswith(("/", ".", "~"))
        or name.endswith(".json")
        or name.count("/") > 1
        or "\\" in name
    )


def _from_hub(repo_id: str, revision: str | None, local_files_only: bool | None) -> Tokenizer:
    from sonic.datasets.hub import fetch_hub_file

    hint = f"or {_LOCAL_HINT}"
    tokenizer_json = fetch_hub_file(
        repo_id,
        "tokenizer.json",
        revision=revision,
        local_hint=hint,
        local_files_only=local_files_only,
    )
    optional: dict[str, Path | None] = {}
    for filename in ("tokenizer_config.json", "chat_template.jinja"):
        try:
            optional[filename] = Path(
                fetch_hub_file(
                    repo_id,
                    filename,
                    revision=revision,
                    local_hint=hint,
                    local_files_only=local_files_only,
                )
            )
        except SonicError:
            optional[filename] = None  # optional files: absent is fine
    return _from_files(
        Path(tokenizer_json),
        optional["tokenizer_config.json"],
        optional["chat_template.jinja"],
        repo_id,
    )


def load_tokenizer(
    name_or_path: str,
    *,
    trust_remote_code: bool = False,
    revision: str | None = None,
    local_files_only: bool | None = None,
) -> Tokenizer:
    """Load a tokenizer from a tokenizer.json file, a directory holding one, or a Hub model id.

    Hub ids are resolved through the local Hugging Face cache first when offline
    (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``); failures are one-line SonicErrors that
    say how to pass a local path. ``trust_remote_code`` is accepted for CLI parity: a
    tokenizer.json never runs code, so it changes nothing.
    """
    from sonic.resources import resolve

    del trust_remote_code  # tokenizer.json is data; there is no remote code to trust
    if not name_or_path or not str(name_or_path).strip():
        raise SonicError(f"no tokenizer given; {_LOCAL_HINT} or a Hub model id")
    name = resolve(str(name_or_path))
    path = Path(name).expanduser()
    if path.is_dir():
        return _from_directory(path, name)
    if path.is_file():
        if path.name == "tokenizer.json" or path.suffix == ".json":
            config = path.with_name("tokenizer_config.json")
            template = path.with_name("chat_template.jinja")
            return _from_files(
                path,
                config if config.is_file() and config != path else None,
                template if template.is_file() else None,
                name,
            )
        raise SonicError(f"{path} is not a tokenizer.json file or a tokenizer directory")
    if _looks_like_path(name):
        raise SonicError(f"tokenizer path {name} does not exist")
    return _from_hub(name, revision, local_files_only)
