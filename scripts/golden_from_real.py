#!/usr/bin/env python3
"""Golden shape files from the result JSON a real benchmark tool wrote.

A golden (``tests/golden/real/<name>.json``) records what a reader of the tool's result file
depends on, not its numbers::

    {"tool": "vllm" | "max-benchmark",      # sonic's --compat name of the tool's dialect
     "version": "0.32.0",                   # the tool's version that wrote the file
     "argv": [...],                         # the tool's flags (after `vllm bench serve` /
                                            # `max benchmark`), machine-specific values as
                                            # {base_url} {model} {tokenizer} {result_dir}
                                            # {result_filename} {log_dir}
     "keys": [...],                         # top-level keys in file order
     "types": {key: "number" | "string" | "null" | "list" | "dict" | "bool"},
     "result_groups": {...},                # when present: nested key -> type (dicts nested)
     "request_records_item": {...}}         # when present: keys -> types of the first record

Usage (one result file per call)::

    python scripts/golden_from_real.py RESULT.json --name NAME --tool vllm --version 0.32.0 \\
        -- --backend openai --endpoint /v1/completions --base-url http://127.0.0.1:18777 ...

    # a new result of the same command, keeping tool/version/argv of the existing golden:
    python scripts/golden_from_real.py RESULT.json --refresh tests/golden/real/NAME.json

    # compare a result file with a golden (exit 1 and the differences when they differ):
    python scripts/golden_from_real.py RESULT.json --check tests/golden/real/NAME.json

Only the standard library is used, so the tests can import this file as a module.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "tests" / "golden" / "real"
TOOLS = ("vllm", "max-benchmark")
# Flag values that name this machine, replaced in the recorded argv (flag -> placeholder).
PLACEHOLDERS = {
    "--base-url": "{base_url}",
    "--model": "{model}",
    "--tokenizer": "{tokenizer}",
    "--result-dir": "{result_dir}",
    "--result-filename": "{result_filename}",
    "--log-dir": "{log_dir}",
}


def json_type(value: Any) -> str:
    """The JSON type of a decoded value (bool before number: bool is an int in Python)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "dict"
    raise TypeError(f"not a JSON value: {type(value).__name__}")


def nested_shape(value: Any) -> Any:
    """A dict as {key: nested shape} (file order kept), anything else as its JSON type."""
    if isinstance(value, dict):
        return {k: nested_shape(v) for k, v in value.items()}
    return json_type(value)


def shape(doc: dict[str, Any]) -> dict[str, Any]:
    """The shape part of a golden: keys, types and, when present, the nested structures."""
    out: dict[str, Any] = {
        "keys": list(doc),
        "types": {k: json_type(v) for k, v in doc.items()},
    }
    if isinstance(doc.get("result_groups"), dict):
        out["result_groups"] = nested_shape(doc["result_groups"])
    records = doc.get("request_records")
    if isinstance(records, list) and records and isinstance(records[0], dict):
        out["request_records_item"] = {k: json_type(v) for k, v in records[0].items()}
    return out


def placeholder_argv(argv: list[str]) -> list[str]:
    """``argv`` with the values of the machine-specific flags replaced by placeholders."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        flag = argv[i]
        name, eq, _ = flag.partition("=")
        if eq and name in PLACEHOLDERS:
            out.append(f"{name}={PLACEHOLDERS[name]}")
        elif flag in PLACEHOLDERS and i + 1 < len(argv):
            out += [flag, PLACEHOLDERS[flag]]
            i += 1
        else:
            out.append(flag)
        i += 1
    return out


def golden(doc: dict[str, Any], tool: str, version: str, argv: list[str]) -> dict[str, Any]:
    if tool not in TOOLS:
        raise ValueError(f"tool must be one of {', '.join(TOOLS)}, not {tool!r}")
    return {"tool": tool, "version": version, "argv": placeholder_argv(argv), **shape(doc)}


def differences(
    doc: dict[str, Any],
    gold: dict[str, Any],
    *,
    optional: tuple[str, ...] = (),
    untyped: tuple[str, ...] = (),
    skip_groups: tuple[str, ...] = (),
) -> list[str]:
    """How the shape of ``doc`` differs from ``gold`` (empty: it matches).

    ``optional`` keys are compared (place and type) only when both have them; ``untyped``
    keys must be there but may have another type; ``skip_groups`` names entries of
    ``result_groups`` left out of the comparison.
    """
    got = shape(doc)
    both = got["types"].keys() & gold["types"].keys()
    mine = [k for k in got["keys"] if k not in optional or k in both]
    theirs = [k for k in gold["keys"] if k not in optional or k in both]
    out: list[str] = []
    if mine != theirs:
        extra = [k for k in mine if k not in theirs]
        missing = [k for k in theirs if k not in mine]
        if extra or missing:
            out.append(f"keys: not in the golden {extra}, missing {missing}")
        else:
            out.append(f"keys in another order: {mine} (golden {theirs})")
    for key in mine:
        if key in both and key not in untyped and got["types"][key] != gold["types"][key]:
            out.append(f"type of {key}: {got['types'][key]} (golden {gold['types'][key]})")
    for part in ("result_groups", "request_records_item"):
        a, b = got.get(part), gold.get(part)
        if part == "result_groups" and isinstance(a, dict) and isinstance(b, dict):
            a = {k: v for k, v in a.items() if k not in skip_groups}
            b = {k: v for k, v in b.items() if k not in skip_groups}
        out += _nested_differences(a, b, part)
    return out


def _nested_differences(got: Any, gold: Any, path: str) -> list[str]:
    if isinstance(got, dict) and isinstance(gold, dict):
        out = []
        if list(got) != list(gold):
            extra = [k for k in got if k not in gold]
            missing = [k for k in gold if k not in got]
            out.append(f"{path}: keys not in the golden {extra}, missing {missing}, order "
                       f"{list(got)} (golden {list(gold)})")  # fmt: skip
        for k in got.keys() & gold.keys():
            out += _nested_differences(got[k], gold[k], f"{path}.{k}")
        return out
    if got != gold:
        return [f"{path}: {_kind(got)} (golden {_kind(gold)})"]
    return []


def _kind(node: Any) -> str:
    if node is None:
        return "absent"
    return "dict" if isinstance(node, dict) else str(node)


def write_golden(path: Path, gold: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(gold, indent=1) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    tool_argv: list[str] = []
    if "--" in raw:
        cut = raw.index("--")
        raw, tool_argv = raw[:cut], raw[cut + 1 :]
    p = argparse.ArgumentParser(
        description="Write a golden shape file from a real tool's result JSON.",
        epilog="The tool's flags follow a lone `--` (needed with --name).",
    )
    p.add_argument("result", type=Path, help="the result JSON the real tool wrote")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--name", help=f"golden name: writes <out-dir>/NAME.json ({OUT_DIR})")
    mode.add_argument("--refresh", type=Path, metavar="GOLDEN", help="rewrite GOLDEN's shape")
    mode.add_argument("--check", type=Path, metavar="GOLDEN", help="compare with GOLDEN")
    p.add_argument("--tool", choices=TOOLS, help="with --name")
    p.add_argument("--version", dest="tool_version", help="the tool's version, with --name")
    p.add_argument("--out-dir", type=Path, default=OUT_DIR)
    args = p.parse_args(raw)
    if args.name and (not args.tool or not args.tool_version or not tool_argv):
        p.error("--name needs --tool, --version and the tool's flags after `--`")
    try:
        doc = json.loads(args.result.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        p.error(f"{args.result}: {exc}")
    if not isinstance(doc, dict):
        p.error(f"{args.result}: not a JSON object")
    if args.check is not None:
        diff = differences(doc, json.loads(args.check.read_text(encoding="utf-8")))
        for line in diff:
            print(line)
        return 1 if diff else 0
    if args.refresh is not None:
        old = json.loads(args.refresh.read_text(encoding="utf-8"))
        write_golden(args.refresh, golden(doc, old["tool"], old["version"], old["argv"]))
        print(f"wrote {args.refresh}")
        return 0
    path = args.out_dir / f"{args.name}.json"
    write_golden(path, golden(doc, args.tool, args.tool_version, tool_argv))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
