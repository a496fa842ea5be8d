"""The tokenizer wrapper: loading, counting, round trips, chat templates and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sonic.errors import SonicError
from sonic.tokenizer import VERY_LARGE_INTEGER, load_tokenizer

TEXTS = [
    "Shall I compare thee to a summer's day?",
    "Plain ASCII with numbers 12345 and symbols #@!",
    "Ünïcödé, 日本語のテキスト, emoji 🚀🌊 and tabs\tand\nnewlines",
    "",
]


def _copy_tokenizer(src: Path, dst: Path, **config_changes) -> Path:
    """A writable copy of the fixture tokenizer with tokenizer_config.json edited."""
    dst.mkdir(parents=True, exist_ok=True)
    shutil.copy(src / "tokenizer.json", dst / "tokenizer.json")
    config = json.loads((src / "tokenizer_config.json").read_text())
    for key, value in config_changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    (dst / "tokenizer_config.json").write_text(json.dumps(config))
    return dst


def _assert_one_line(exc: SonicError) -> str:
    message = str(exc)
    assert message and "\n" not in message
    assert "Traceback" not in message
    return message


def test_loads_from_directory_and_from_file(tokenizer_dir, tokenizer_json):
    from_dir = load_tokenizer(str(tokenizer_dir))
    from_file = load_tokenizer(str(tokenizer_json))
    assert from_dir.vocab_size == from_file.vocab_size == 2000
    text = TEXTS[0]
    assert from_dir.encode(text) == from_file.encode(text)
    # The file path still picks up the sibling tokenizer_config.json.
    assert from_file.has_chat_template and from_file.model_max_length == 4096


def test_special_tokens_and_ids(tokenizer):
    assert tokenizer.bos_token == "<|begin_of_text|>"
    assert tokenizer.eos_token == "<|im_end|>"
    assert tokenizer.bos_id == tokenizer.token_to_id("<|begin_of_text|>")
    assert tokenizer.eos_id == tokenizer.token_to_id("<|im_end|>")
    expected = sorted(
        tokenizer.token_to_id(t)
        for t in ("<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>")
    )
    assert tokenizer.special_ids == expected
    assert len(tokenizer) >= tokenizer.vocab_size


@pytest.mark.parametrize("text", TEXTS)
def test_round_trip(tokenizer, text):
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    assert tokenizer.count(text) == len(ids)
    if text:
        assert all(0 <= i < len(tokenizer) for i in ids)


def test_add_special_tokens_prepends_bos(tokenizer):
    text = TEXTS[0]
    plain = tokenizer.encode(text)
    with_special = tokenizer.encode(text, add_special_tokens=True)
    assert with_special == [tokenizer.bos_id, *plain]
    assert tokenizer.num_special_tokens_to_add() == 1
    assert tokenizer.count(text, add_special_tokens=True) == len(plain) + 1
    # Special tokens survive decoding unless skipped, as in transformers.
    assert tokenizer.decode(with_special).startswith("<|begin_of_text|>")
    assert tokenizer.decode(with_special, skip_special_tokens=True) == text


def test_encode_batch_matches_encode(tokenizer):
    batch = tokenizer.encode_batch(TEXTS, add_special_tokens=True)
    assert batch == [tokenizer.encode(t, add_special_tokens=True) for t in TEXTS]


def test_special_token_text_is_one_token(tokenizer):
    ids = tokenizer.encode("<|im_start|>user")
    assert ids[0] == tokenizer.token_to_id("<|im_start|>")


def test_chat_template_renders_chatml(tokenizer):
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hello there"},
    ]
    rendered = tokenizer.apply_chat_template(messages)
    assert rendered == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nHello there<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    without = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    assert not without.endswith("<|im_start|>assistant\n")
    assert rendered.startswith(without)


def test_chat_template_file_takes_precedence(tokenizer_dir, tmp_path):
    d = _copy_tokenizer(tokenizer_dir, tmp_path / "tok")
    (d / "chat_template.jinja").write_text(
        "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}[assistant]{% endif %}"
    )
    tok = load_tokenizer(str(d))
    assert tok.apply_chat_template([{"role": "user", "content": "hi"}]) == "[user] hi\n[assistant]"


def test_chat_template_sees_special_tokens_and_tojson(tokenizer_dir, tmp_path):
    template = "{{ bos_token }}{{ messages | tojson }}{{ eos_token }}"
    tok = load_tokenizer(
        str(_copy_tokenizer(tokenizer_dir, tmp_path / "t", chat_template=template))
    )
    out = tok.apply_chat_template([{"role": "user", "content": "é"}])
    assert out == '<|begin_of_text|>[{"role": "user", "content": "é"}]<|im_end|>'


def test_missing_chat_template_is_a_clear_error(tokenizer_dir, tmp_path):
    tok = load_tokenizer(str(_copy_tokenizer(tokenizer_dir, tmp_path / "t", chat_template=None)))
    assert not tok.has_chat_template
    with pytest.raises(SonicError) as err:
        tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert "no chat template" in _assert_one_line(err.value)


def test_template_raise_exception_becomes_sonic_error(tokenizer_dir, tmp_path):
    template = "{{ raise_exception('only user turns, please') }}"
    tok = load_tokenizer(
        str(_copy_tokenizer(tokenizer_dir, tmp_path / "t", chat_template=template))
    )
    with pytest.raises(SonicError) as err:
        tok.apply_chat_template([{"role": "user", "content": "hi"}])
    assert "only user turns, please" in _assert_one_line(err.value)


def test_template_is_sandboxed(tokenizer_dir, tmp_path):
    template = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    tok = load_tokenizer(
        str(_copy_tokenizer(tokenizer_dir, tmp_path / "t", chat_template=template))
    )
    with pytest.raises(SonicError):
        tok.apply_chat_template([{"role": "user", "content": "hi"}])


def test_bare_tokenizer_json_defaults(tokenizer_json, tmp_path):
    lone = tmp_path / "tokenizer.json"
    shutil.copy(tokenizer_json, lone)
    tok = load_tokenizer(str(lone))
    assert tok.model_max_length == VERY_LARGE_INTEGER
    assert tok.bos_token is None and not tok.has_chat_template
    # Without a config every added special token counts as special.
    assert tok.special_ids == [0, 1, 2, 3]


def test_clean_up_tokenization_spaces_follows_config(tokenizer_dir, tmp_path):
    text = "Hello , world . I 'm here !"
    plain = load_tokenizer(str(tokenizer_dir))
    assert plain.decode(plain.encode(text)) == text
    d = _copy_tokenizer(tokenizer_dir, tmp_path / "t", clean_up_tokenization_spaces=True)
    cleaning = load_tokenizer(str(d))
    assert cleaning.decode(cleaning.encode(text)) == "Hello, world. I'm here!"


@pytest.mark.parametrize(
    "name",
    ["./does/not/exist", "/no/such/tokenizer.json", "~/missing-dir/", "a/b/c"],
)
def test_missing_local_path(name):
    with pytest.raises(SonicError) as err:
        load_tokenizer(name)
    assert "does not exist" in _assert_one_line(err.value)


def test_directory_without_tokenizer_json(tmp_path):
    with pytest.raises(SonicError) as err:
        load_tokenizer(str(tmp_path))
    assert "tokenizer.json" in _assert_one_line(err.value)


def test_corrupt_files(tokenizer_dir, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tokenizer.json").write_text("{not json")
    with pytest.raises(SonicError) as err:
        load_tokenizer(str(bad))
    _assert_one_line(err.value)

    d = _copy_tokenizer(tokenizer_dir, tmp_path / "badconfig")
    (d / "tokenizer_config.json").write_text("[1, 2")
    with pytest.raises(SonicError) as err:
        load_tokenizer(str(d))
    assert "not valid JSON" in _assert_one_line(err.value)


def test_offline_hub_id_is_one_line_error_without_secrets(offline_hub, monkeypatch):
    secret = "hf_sentinelSECRETvalue123"
    monkeypatch.setenv("HF_TOKEN", secret)
    with pytest.raises(SonicError) as err:
        load_tokenizer("sonic-bench-tests/no-such-model")
    message = _assert_one_line(err.value)
    assert "sonic-bench-tests/no-such-model" in message
    assert "local" in message and "--tokenizer" in message
    assert secret not in message
    # Raised `from None`: no chained traceback is shown even if someone prints the exception.
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_hub_id_resolves_from_local_cache(offline_hub, tokenizer_dir):
    """An id already in the Hub cache loads offline, picking up its config and template."""
    snapshot = offline_hub / "models--sonic-tests--cached" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tokenizer_dir / name, snapshot / name)
    refs = offline_hub / "models--sonic-tests--cached" / "refs"
    refs.mkdir()
    (refs / "main").write_text("0" * 40)
    tok = load_tokenizer("sonic-tests/cached")
    assert tok.vocab_size == 2000 and tok.has_chat_template
    assert tok.name_or_path == "sonic-tests/cached"


def test_imports_stay_lazy():
    """Importing the tokenizer and datasets modules must not load the heavy libraries."""
    import sonic

    package_root = str(Path(sonic.__file__).resolve().parent.parent)
    code = (
        "import sys, sonic.tokenizer, sonic.datasets; "
        "heavy = [m for m in ('tokenizers', 'numpy', 'jinja2', 'huggingface_hub') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    env = dict(os.environ, PYTHONPATH=package_root)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == ""
