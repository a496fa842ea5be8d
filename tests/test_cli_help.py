"""`sonic run --help`: grouped by topic, with per-profile defaults and flag statuses."""

from __future__ import annotations

import pytest

from sonic.compat import format_run_help, parse_run_args
from sonic.compat.flags import ACCEPTED, FLAGS, GROUPS, IMPLEMENTED, REFUSED


@pytest.mark.parametrize("token", ["--help", "-h"])
def test_help_prints_and_exits_zero(token, capsys):
    with pytest.raises(SystemExit) as info:
        parse_run_args(["--request-rate", "5", token])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out == format_run_help()


def test_help_has_groups_and_every_flag():
    text = format_run_help()
    for title in GROUPS.values():
        assert f"\n{title}:\n" in text
    for flag in FLAGS:
        assert flag.name in text, flag.name
    assert "accepted for compatibility" in text
    assert "refused:" in text


def test_help_shows_profile_defaults_and_origins():
    text = format_run_help()
    # Each flag's entry: its first line plus the indented continuation lines, joined.
    lines: dict[str, str] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("  --"):
            current = line.split()[0]
            lines[current] = line
        elif line.startswith("    ") and current:
            lines[current] += " " + line.strip()
        else:
            current = ""
    assert "default: vllm 127.0.0.1, max localhost" in lines["--host"]
    assert "default: vllm random, max sharegpt" in lines["--dataset-name"]
    assert "default: 8000" in lines["--port"]
    assert "[vLLM]" in lines["--goodput"]
    assert "[MAX]" in lines["--server-args"]
    assert "[sonic]" in lines["--request-timeout-s"]
    assert "Default: max for --backend modular/modular-chat, otherwise vllm" in text
    from sonic import dialects

    for d in dialects.all_dialects():  # every registered dialect is explained
        assert f"  {d.name} " in text and d.title in text


def test_help_fits_width():
    assert max(len(line) for line in format_run_help().splitlines()) <= 100


def test_flag_table_is_consistent():
    for flag in FLAGS:
        assert flag.status in (IMPLEMENTED, ACCEPTED, REFUSED)
        assert flag.kind in ("value", "bool", "list")
        if flag.status == IMPLEMENTED:
            assert flag.group in GROUPS, flag.name
        else:
            assert flag.reason, flag.name
