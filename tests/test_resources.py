"""``sonic:NAME``: files sonic ships, usable wherever a path is taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sonic.datasets.base import existing_file
from sonic.errors import SonicError
from sonic.resources import PREFIX, RESOURCES, is_resource, resolve
from sonic.sim import SimOptions
from sonic.suite.config import load_config, resolve_path
from sonic.suite.validate import gated_models
from sonic.tokenizer import load_tokenizer

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SHIPPED = [n for n in RESOURCES if n != "smollm2"]  # smollm2 is converted, tested with the engines


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_files_exist_inside_the_package(name):
    import sonic

    path = Path(resolve(PREFIX + name))
    assert path.exists()
    assert Path(sonic.__file__).parent in path.parents


def test_other_values_pass_through():
    assert resolve("./tok") == "./tok" and resolve("org/model") == "org/model"
    assert not is_resource("sonicdemo") and is_resource("sonic:demo")


def test_an_unknown_name_lists_the_known_ones():
    with pytest.raises(SonicError, match=r"unknown resource 'sonic:nope'; sonic ships: sonic:demo"):
        resolve("sonic:nope")


def test_tokenizer_dataset_and_sim_take_the_names():
    tok = load_tokenizer("sonic:demo")
    assert tok.encode("hello world") and tok.chat_template
    path = existing_file("sonic:sharegpt-sample", "ShareGPT dataset")
    assert isinstance(json.loads(path.read_text()), list)
    doc = json.loads(SimOptions(tokenizer="sonic:demo").to_json())
    assert Path(doc["tokenizer"]).is_dir()


def test_the_sim_demo_example_needs_nothing_from_the_checkout():
    text = (EXAMPLES / "sim-demo.toml").read_text()
    assert "../" not in text.replace("# ", "")  # no relative path out of examples/
    cfg = load_config(EXAMPLES / "sim-demo.toml")
    assert Path(resolve_path(cfg, cfg.tokenizer)).is_dir()
    assert gated_models(cfg) == []  # a shipped name is local, never a gated Hub id
