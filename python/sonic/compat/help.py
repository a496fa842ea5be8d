"""``sonic run --help``: flags grouped by topic, with each tool's defaults, from the flag table."""

from __future__ import annotations

import textwrap
from typing import Any

from sonic import dialects
from sonic.compat.backends import BACKENDS
from sonic.compat.flags import ACCEPTED, FLAGS, GROUPS, IMPLEMENTED, ORIGINS, REFUSED, Flag

WIDTH = 100
LEFT = 32

INTRO = """\
usage: sonic run [--compat NAME] [FLAGS...]      (also: python -m sonic [FLAGS...])

Run one benchmark against a serving engine. Takes the flags of vLLM `bench serve` and of MAX's
benchmarks; `--flag value` and `--flag=value` both work, and boolean flags also take
`--flag=false` and `--no-flag`. [vLLM] and [MAX] mark flags that only one tool has; [sonic]
marks sonic's own.

dialects (--compat) choose defaults, request bodies, metric rules, result JSON, file names,
console labels and the exit/save policy of one tool:"""


def _intro() -> str:
    lines = [INTRO]
    for d in dialects.all_dialects():
        text = f"{d.name:<13} {d.title}: {d.summary}"
        lines.append(_fill(text, WIDTH - 2, initial_indent="  ", subsequent_indent=" " * 16))
    backends = ", ".join(
        f"{d.name} for --backend {'/'.join(d.backends)}"
        for d in dialects.all_dialects()
        if d.backends
    )
    lines.append(f"  Default: {backends}, otherwise {dialects.DEFAULT}.\n")
    lines.append(
        _fill(
            "A dialect's default differs from another's where its tool's does; "
            "'default: vllm X, max Y' below lists them.",
            WIDTH,
        )
        + "\n"
    )
    return "\n".join(lines)


def _wrap(text: str, width: int) -> list[str]:
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False)


def _fill(text: str, width: int, **kwargs: str) -> str:
    return textwrap.fill(text, width, break_on_hyphens=False, break_long_words=False, **kwargs)


def _show(value: Any) -> str:
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if value is None:
        return "unset"
    return str(value)


def _default_text(flag: Flag) -> str:
    per = {
        d.name: d.defaults[flag.dest] for d in dialects.all_dialects() if flag.dest in d.defaults
    }
    if per:
        shown = {name: _show(v) for name, v in per.items()}
        if len(set(shown.values())) == 1:
            return f"default: {next(iter(shown.values()))}"
        return "default: " + ", ".join(f"{name} {v}" for name, v in shown.items())
    return f"default: {flag.default}" if flag.default else ""


def _entry(flag: Flag) -> str:
    head = f"  {flag.name}" + (f" {flag.metavar}" if flag.metavar else "")
    if flag.aliases:
        head += " (also " + ", ".join(flag.aliases) + ")"
    parts = [flag.help] if flag.help else []
    origin = ORIGINS[flag.origin]
    if origin:
        parts.append(f"[{origin}]")
    default = _default_text(flag)
    if default:
        parts.append(f"({default})")
    body = " ".join(parts)
    if len(head) + 2 > LEFT:
        first, indent = head, " " * LEFT
        wrapped = _wrap(body, WIDTH - LEFT) or [""]
        return "\n".join([first] + [indent + line for line in wrapped if line])
    wrapped = _wrap(body, WIDTH - LEFT) or [""]
    lines = [head.ljust(LEFT) + wrapped[0]] + [" " * LEFT + line for line in wrapped[1:]]
    return "\n".join(line.rstrip() for line in lines)


def _harmless_note(flag: Flag) -> str:
    if not flag.harmless:
        return ""
    if flag.kind == "bool":
        form = f"--no-{flag.name[2:]}" if flag.negation else f"{flag.name}=false"
    else:
        form = f"{flag.name} {flag.harmless[0] or repr('')}"
    return f" ({form} is accepted)"


def format_run_help() -> str:
    """The full help text of ``sonic run``."""
    out = [_intro()]
    for key, title in GROUPS.items():
        flags = [f for f in FLAGS if f.status == IMPLEMENTED and f.group == key]
        if not flags:
            continue
        out.append(f"{title}:")
        out.extend(_entry(f) for f in flags)
        if key == "target":
            names = ", ".join(BACKENDS)
            out.append(
                _fill(f"backends: {names}", WIDTH, initial_indent="  ", subsequent_indent="    ")
            )
        out.append("")
    accepted = [f.name for f in FLAGS if f.status == ACCEPTED]
    out.append("accepted for compatibility, change nothing sonic measures (listed in the run):")
    out.append(_fill(", ".join(accepted), WIDTH, initial_indent="  ", subsequent_indent="  "))
    out.append("")
    out.append("refused: would change what is measured and are not implemented (an error):")
    for flag in (f for f in FLAGS if f.status == REFUSED):
        tag = f" [{ORIGINS[flag.origin]}]" if ORIGINS[flag.origin] else ""
        ok = _harmless_note(flag)
        out.append(
            _fill(
                f"{flag.name}{tag}: {flag.reason}{ok}",
                WIDTH,
                initial_indent="  ",
                subsequent_indent="      ",
            )
        )
    out.append("")
    return "\n".join(out)
