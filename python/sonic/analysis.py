"""Suite results as pandas DataFrames: ``load_results`` (one row per run) and ``load_requests``
(one row per request), for the report and for notebooks.

A results directory holds runs in any dialect (vLLM, MAX 2025, MAX 2026) that name the same
quantity differently and omit different things; every normalised column (the metric
catalogue's) is read by the run's dialect from its own key, or from the ``sonic`` extras that
all carry, never from a guessed name.
An interrupted suite leaves a partial directory: runs the manifest lists without a file,
and files the manifest does not list yet. Both are loaded, the former as rows without
metrics, so the report can say what is missing.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sonic.errors import SonicError
from sonic.metrics import catalogue

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

MANIFEST = "manifest.json"
VALIDATION = "validation.json"
RUNS_DIR = "runs"
RAW_SUFFIX = ".requests.jsonl"

LATENCY_METRICS = tuple(m.name for m in catalogue.LATENCIES)
LATENCY_STATS = catalogue.LATENCY_STATS
SCALAR_COLUMNS = catalogue.SCALAR_COLUMNS
LATENCY_COLUMNS = catalogue.LATENCY_COLUMNS
ID_COLUMNS = (
    "engine",
    "scenario",
    "dataset",
    "request_rate",
    "max_concurrency",
    "repeat",
    "simulated",
    "dialect",
    "status",
    "partial",
    "interrupted",
    "error",
    "run_id",
    "file",
    "search",  # the capacity search a probe belongs to (its id); None for a sweep's runs
)
# Checks on the run itself: requests that stopped before max_tokens although ignore_eos was
# sent (the engine did not honour it; NaN where the result does not say).
CHECK_COLUMNS = ("eos_not_honoured",)
# The run's validity verdict (sonic.metrics.validity): valid | warn | invalid (None: the
# result predates verdicts), every reason code, the codes that invalidate the whole run, and
# the statistics invalidated on their own (e.g. p99_ttft_ms from too few requests); the lists
# are comma-joined.
VALIDITY_COLUMNS = ("validity", "validity_reasons", "invalid_because", "invalid_metrics")
# Sessions and trace runs (``sonic.workload``; NaN for plain prompts): the share of prompt
# tokens that an unbounded prefix cache could serve (the finest block size the result lists),
# the engine's prefix-cache hit rate from its /metrics counters, the share of prompt tokens its
# responses' usage said were cached, and mean TTFT of first turns and of later turns.
WORKLOAD_COLUMNS = (
    "expected_prefix_reuse",
    "measured_prefix_cache_hit_rate",
    "reported_cached_prompt_share",
    "first_turn_ttft_ms",
    "later_turns_ttft_ms",
)
RESULT_COLUMNS = (
    ID_COLUMNS
    + SCALAR_COLUMNS
    + CHECK_COLUMNS
    + VALIDITY_COLUMNS
    + LATENCY_COLUMNS
    + WORKLOAD_COLUMNS
)
REQUEST_COLUMNS = (
    "engine",
    "scenario",
    "request_rate",
    "max_concurrency",
    "repeat",
    "simulated",
    "index",
    "session_index",
    "turn_index",
    "success",
    "error",
    "http_status",
    "finish_reason",
    "sent_s",
    "queue_ms",
    "ttft_ms",
    "tpot_ms",
    "e2el_ms",
    "itl_ms",
    "itl_count",
    "input_tokens",
    "output_tokens",
)
_RUN_NAME = re.compile(r"^rate-(?P<rate>[^_]+)_conc-(?P<conc>[^_]+)_rep-(?P<rep>\d+)$")


@dataclass
class RunEntry:
    """One run of the suite as the manifest lists it (or as found on disk)."""

    engine: str
    scenario: str
    dataset: str | None
    request_rate: float
    max_concurrency: int | None
    repeat: int
    status: str
    dialect: str | None
    file: Path | None
    raw_file: Path | None
    error: str | None
    run_id: str
    simulated: bool = False
    interrupted: bool = False
    search: str | None = None


# ------------------------------------------------------------------ directory reading


def results_root(results_dir: str | Path) -> Path:
    """The directory, checked: it exists and holds a manifest or a ``runs/`` folder."""
    root = Path(results_dir)
    if not root.exists():
        raise SonicError(f"results directory {root} does not exist")
    if not root.is_dir():
        raise SonicError(f"{root} is not a directory (expected a suite results directory)")
    if not (root / MANIFEST).is_file() and not (root / RUNS_DIR).is_dir():
        raise SonicError(
            f"{root} is not a sonic results directory (no {MANIFEST} and no {RUNS_DIR}/ folder)"
        )
    return root


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SonicError(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise SonicError(
            f"{what} {path} is not valid JSON: {exc.msg} at line {exc.lineno}"
        ) from None


def read_manifest(results_dir: str | Path) -> dict[str, Any]:
    """The suite manifest, or ``{}`` when the directory has runs but no manifest yet."""
    root = results_root(results_dir)
    path = root / MANIFEST
    if not path.is_file():
        return {}
    doc = _read_json(path, "manifest")
    if not isinstance(doc, dict):
        raise SonicError(f"manifest {path} is not a JSON object")
    for key, kind in (("engines", dict), ("runs", list)):
        if key in doc and not isinstance(doc[key], kind):
            raise SonicError(f"manifest {path}: {key!r} must be a JSON {kind.__name__}")
    return doc


def read_validation(results_dir: str | Path) -> dict[str, Any] | None:
    """``validation.json``, or None when the suite did not write one."""
    path = results_root(results_dir) / VALIDATION
    if not path.is_file():
        return None
    doc = _read_json(path, "validation file")
    if not isinstance(doc, dict) or not isinstance(doc.get("checks", []), list):
        raise SonicError(f"validation file {path} must be an object with a 'checks' list")
    return doc


def parse_rate(value: Any) -> float:
    """A request rate as written in results: a number or ``"inf"``."""
    if value is None:
        return math.inf
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SonicError(f"bad request rate {value!r} in results") from None


def _concurrency(value: Any) -> int | None:
    if value in (None, "", "none", "null", "inf"):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def simulated_engines(manifest: dict[str, Any]) -> set[str]:
    """Engines the manifest marks as simulated."""
    engines = manifest.get("engines") or {}
    return {name for name, e in engines.items() if isinstance(e, dict) and e.get("simulated")}


def _entry_from_manifest(root: Path, run: dict[str, Any]) -> RunEntry:
    file = root / run["file"] if run.get("file") else None
    raw = root / run["raw_file"] if run.get("raw_file") else None
    engine, scenario = str(run.get("engine", "?")), str(run.get("scenario", "?"))
    rate, conc, rep = run.get("request_rate"), run.get("max_concurrency"), run.get("repeat", 0)
    return RunEntry(
        engine=engine,
        scenario=scenario,
        dataset=run.get("dataset"),
        request_rate=parse_rate(rate),
        max_concurrency=_concurrency(conc),
        repeat=int(rep or 0),
        status=str(run.get("status") or "unknown"),
        dialect=run.get("dialect"),
        file=file,
        raw_file=raw,
        error=run.get("error"),
        run_id=str(run.get("id") or f"{engine}/{scenario}/rate-{rate}_conc-{conc}_rep-{rep}"),
        simulated=bool(run.get("simulated")),
        interrupted=bool(run.get("interrupted")),
        search=run.get("search"),
    )


def _key(e: RunEntry) -> tuple[str, str, float, int | None, int]:
    return (e.engine, e.scenario, e.request_rate, e.max_concurrency, e.repeat)


def _scan_runs(root: Path, known: set[Path], keys: set[tuple]) -> Iterator[RunEntry]:
    """Run files on disk that the manifest does not list (written just before a crash); the
    manifest's word wins for a run it lists (e.g. as failed)."""
    runs = root / RUNS_DIR
    if not runs.is_dir():
        return
    for path in sorted(runs.glob("*/*/*.json")):
        if path.resolve() in known:
            continue
        m = _RUN_NAME.match(path.stem)
        if not m:
            continue
        engine, scenario = path.parent.parent.name, path.parent.name
        raw = path.with_name(path.stem + RAW_SUFFIX)
        entry = RunEntry(
            engine=engine,
            scenario=scenario,
            dataset=None,
            request_rate=parse_rate(m["rate"]),
            max_concurrency=_concurrency(m["conc"]),
            repeat=int(m["rep"]),
            status="ok",
            dialect=None,
            file=path,
            raw_file=raw if raw.is_file() else None,
            error=None,
            run_id=f"{engine}/{scenario}/{path.stem}",
        )
        if _key(entry) not in keys:
            yield entry


def run_entries(results_dir: str | Path) -> list[RunEntry]:
    """Every run of the directory: the manifest's, then unlisted files found under runs/."""
    root = results_root(results_dir)
    manifest = read_manifest(root)
    entries = []
    for run in manifest.get("runs", []):
        if not isinstance(run, dict):
            raise SonicError(f"manifest {root / MANIFEST}: every entry of 'runs' must be an object")
        entries.append(_entry_from_manifest(root, run))
    known = {e.file.resolve() for e in entries if e.file is not None}
    entries.extend(_scan_runs(root, known, {_key(e) for e in entries}))
    return entries


# ------------------------------------------------------------------ per-run results


def doc_dialect(doc: dict[str, Any], hint: str | None = None) -> str:
    """The dialect of a result document: the manifest's word, else what the document says."""
    from sonic import dialects

    return dialects.of_document(doc, hint).name


def normalise_metrics(doc: dict[str, Any], dialect: str) -> dict[str, float]:
    """The normalised metric columns of one result document, read by its dialect."""
    from sonic import dialects

    return dialects.get(dialect).read_metrics(doc)


def _result_row(entry: RunEntry, manifest_sim: set[str]) -> dict[str, Any]:
    row: dict[str, Any] = {
        "engine": entry.engine,
        "scenario": entry.scenario,
        "dataset": entry.dataset,
        "request_rate": entry.request_rate,
        "max_concurrency": entry.max_concurrency,
        "repeat": entry.repeat,
        "simulated": entry.simulated or entry.engine in manifest_sim,
        "dialect": entry.dialect,
        "status": entry.status,
        "partial": False,
        "interrupted": entry.interrupted,
        "error": entry.error,
        "run_id": entry.run_id,
        "file": str(entry.file) if entry.file else None,
        "search": entry.search,
    }
    row.update(
        dict.fromkeys(SCALAR_COLUMNS + CHECK_COLUMNS + LATENCY_COLUMNS + WORKLOAD_COLUMNS, math.nan)
    )
    row.update({"validity": None, "validity_reasons": "", "invalid_because": ""})
    row["invalid_metrics"] = ""
    if entry.file is None or not entry.file.is_file():
        if entry.status in ("ok", "partial"):
            row["status"], row["error"] = "missing", f"result file {entry.file} is missing"
        return row
    try:
        doc = _read_json(entry.file, "result file")
        if not isinstance(doc, dict):
            raise SonicError(f"result file {entry.file} is not a JSON object")
        dialect = doc_dialect(doc, entry.dialect)
    except SonicError as exc:
        row["status"], row["error"] = "unreadable", str(exc)
        return row
    sonic = doc.get("sonic") if isinstance(doc.get("sonic"), dict) else {}
    row["dialect"] = dialect
    row["simulated"] = bool(row["simulated"] or sonic.get("simulated"))
    row["partial"] = bool(sonic.get("partial"))
    row["interrupted"] = bool(row["interrupted"] or sonic.get("cancelled"))
    row["dataset"] = row["dataset"] or doc.get("dataset_name")
    if entry.status == "unknown":
        row["status"] = "partial" if row["partial"] else "ok"
    row.update(normalise_metrics(doc, dialect))
    lengths = sonic.get("output_lengths")
    if isinstance(lengths, dict) and isinstance(lengths.get("short"), int):
        row["eos_not_honoured"] = lengths["short"] if lengths.get("ignore_eos") else 0
    row.update(_validity_columns(sonic.get("validity")))
    row.update(_workload_columns(sonic.get("workload")))
    return row


def _workload_columns(doc: Any) -> dict[str, Any]:
    """The WORKLOAD_COLUMNS of a result's ``sonic.workload`` (nothing for plain prompts)."""
    if not isinstance(doc, dict):
        return {}
    out: dict[str, Any] = {}
    sizes = (doc.get("expected_prefix_reuse") or {}).get("by_block_size") or {}
    if sizes:
        finest = min(sizes, key=lambda k: int(k))
        out["expected_prefix_reuse"] = sizes[finest].get("share", math.nan)
    for key in ("measured_prefix_cache_hit_rate", "reported_cached_prompt_share"):
        if isinstance(doc.get(key), (int, float)):
            out[key] = float(doc[key])
    turns = [t for t in doc.get("by_turn") or [] if t.get("ttft_mean_ms") is not None]
    first = [t for t in turns if t.get("turn") == 0]
    later = [t for t in turns if t.get("turn", 0) > 0 and t.get("completed")]
    if first:
        out["first_turn_ttft_ms"] = float(first[0]["ttft_mean_ms"])
    if later:
        n = sum(t["completed"] for t in later)
        out["later_turns_ttft_ms"] = sum(t["ttft_mean_ms"] * t["completed"] for t in later) / n
    return out


def _validity_columns(doc: Any) -> dict[str, Any]:
    from sonic.metrics.validity import INVALID, from_dict

    parsed = from_dict(doc)
    if parsed is None:
        return {}
    verdict, reasons = parsed
    return {
        "validity": verdict,
        "validity_reasons": ",".join(dict.fromkeys(r.code for r in reasons)),
        "invalid_because": ",".join(
            dict.fromkeys(r.code for r in reasons if r.severity == INVALID and not r.affects)
        ),
        "invalid_metrics": ",".join(
            sorted({c for r in reasons if r.severity == INVALID for c in r.affects})
        ),
    }


def _frame(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(rows, columns=list(columns))
    df["max_concurrency"] = df["max_concurrency"].astype("Int64")
    df["request_rate"] = df["request_rate"].astype(float)
    df["repeat"] = df["repeat"].astype(int)
    for col in ("simulated", "partial", "interrupted"):
        if col in df:
            df[col] = df[col].astype(bool)
    return df


def load_results(results_dir: str | Path) -> pd.DataFrame:
    """One row per engine × scenario × rate × concurrency × repeat, metrics normalised.

    Columns: ``ID_COLUMNS`` (engine, scenario, dataset, request_rate (inf = unbounded),
    max_concurrency (<NA> = none), repeat, simulated, dialect, status, partial, interrupted,
    error, run_id, file), then ``SCALAR_COLUMNS`` (completed, failed, duration_s, token
    totals, throughputs, goodput) and ``LATENCY_COLUMNS``
    (``{mean,median,p90,p95,p99}_{ttft,tpot,itl,e2el}_ms``).
    Runs without a readable result keep their row with status missing/unreadable/failed.
    """
    manifest = read_manifest(results_dir)
    sim = simulated_engines(manifest)
    rows = [_result_row(e, sim) for e in run_entries(results_dir)]
    return _frame(rows, RESULT_COLUMNS)


# ------------------------------------------------------------------ per-request records


def _read_raw_lines(path: Path) -> list[dict[str, Any]]:
    lines = []
    with path.open(encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise SonicError(f"{path}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(obj, dict):
                raise SonicError(f"{path}:{n}: expected a JSON object")
            lines.append(obj)
    return lines


def _records_from_lines(lines: list[dict[str, Any]]):
    """Rebuild the columnar RunRecords the metrics are defined on from the raw JSONL."""
    import numpy as np

    from sonic.records import RunRecords

    def ns(v: Any) -> int:
        return -1 if v is None else int(v)

    chunk_ns: list[int] = []
    chunk_kind: list[int] = []
    texts: list[bytes] = []
    counts: list[int] = []
    for obj in lines:
        cns, ckind = obj.get("chunk_ns") or [], obj.get("chunk_kind") or []
        ctext = obj.get("chunk_text") or [""] * len(cns)
        if not (len(cns) == len(ckind) == len(ctext)):
            raise SonicError(f"request {obj.get('index')}: chunk arrays of different lengths")
        chunk_ns += [int(x) for x in cns]
        chunk_kind += [int(x) for x in ckind]
        texts += [str(t).encode("utf-8") for t in ctext]
        counts.append(len(cns))
    usage = [o.get("usage") if isinstance(o.get("usage"), dict) else {} for o in lines]
    i64 = np.int64
    return RunRecords(
        t0_unix_ns=0,
        t0_mono_ns=0,
        cancelled=False,
        intended_ns=np.array([ns(o.get("intended_ns")) for o in lines], i64),
        sent_ns=np.array([ns(o.get("sent_ns")) for o in lines], i64),
        end_ns=np.array([ns(o.get("end_ns")) for o in lines], i64),
        http_status=np.array([int(o.get("http_status") or 0) for o in lines], np.int32),
        prompt_tokens=np.array([ns(u.get("prompt_tokens")) for u in usage], i64),
        completion_tokens=np.array([ns(u.get("completion_tokens")) for u in usage], i64),
        error=[o.get("error") for o in lines],
        finish_reason=[o.get("finish_reason") for o in lines],
        chunk_offsets=np.concatenate([[0], np.cumsum(counts, dtype=i64)]).astype(i64),
        chunk_ns=np.array(chunk_ns, i64),
        chunk_kind=np.array(chunk_kind, np.uint8),
        chunk_text_offsets=np.concatenate(
            [[0], np.cumsum([len(t) for t in texts], dtype=i64)]
        ).astype(i64),
        text=b"".join(texts),
        session_index=np.array(
            [int(o.get("session_index", o.get("index", i))) for i, o in enumerate(lines)], i64
        ),
        turn_index=np.array([int(o.get("turn_index", 0)) for o in lines], i64),
        cached_tokens=np.array([ns(u.get("cached_tokens")) for u in usage], i64),
    )


def _rules(doc: dict[str, Any] | None, dialect: str | None):
    from sonic.metrics import MetricRules

    sonic = doc.get("sonic") if isinstance(doc, dict) else None
    rules = sonic.get("rules") if isinstance(sonic, dict) else None
    if isinstance(rules, dict):
        known = set(MetricRules.__dataclass_fields__)
        return MetricRules(**{k: v for k, v in rules.items() if k in known})
    from sonic import dialects

    return dialects.get(dialect or dialects.DEFAULT).metric_rules


def replay_requests(lines: list[dict[str, Any]], rules):
    """Per-request metrics of raw lines under the run's rules, with the run's token counts.

    The lines carry the token counts the run used (``input_len``/``output_len``), so they are
    fed back as-is (no tokenizer needed); lines without them fall back to server usage.
    """
    from dataclasses import replace

    import numpy as np

    from sonic.metrics import compute_request_metrics

    records = _records_from_lines(lines)
    recorded = all("output_len" in o and "success" in o for o in lines)
    if recorded:
        ok_out = [int(o["output_len"]) for o in lines if o["success"]]
        prompt = [int(o.get("input_len") or 0) for o in lines]
        rm = compute_request_metrics(
            records, replace(rules, token_count="retokenize"), prompt, lambda texts: ok_out
        )
        if [bool(o["success"]) for o in lines] != rm.success.tolist():
            raise SonicError("raw records disagree with their recorded success flags")
        return rm, np.ones(len(lines), dtype=bool)
    # No recorded counts: server usage where present; elsewhere the count is unknown.
    prompt = [max(0, int(records.prompt_tokens[i])) for i in range(records.n)]
    rm = compute_request_metrics(
        records, replace(rules, token_count="usage"), prompt, lambda texts: [0] * len(texts)
    )
    return rm, np.asarray(records.completion_tokens) > 0


def _request_rows(entry: RunEntry, doc: dict[str, Any] | None, simulated: bool) -> list[dict]:
    import numpy as np

    lines = _read_raw_lines(entry.raw_file)
    rm, known_counts = replay_requests(lines, _rules(doc, entry.dialect))
    tpot = np.where(known_counts, rm.tpot_s, np.nan)
    out_tokens = np.where(known_counts, rm.output_len.astype(float), np.nan)
    rows = []
    for i, obj in enumerate(lines):
        itl = (rm.itls(i) * 1000.0).tolist()
        rows.append(
            {
                "engine": entry.engine,
                "scenario": entry.scenario,
                "request_rate": entry.request_rate,
                "max_concurrency": entry.max_concurrency,
                "repeat": entry.repeat,
                "simulated": simulated,
                "index": int(obj.get("index", i)),
                # Lines written before sessions: each request a one-turn session.
                "session_index": int(obj.get("session_index", obj.get("index", i))),
                "turn_index": int(obj.get("turn_index", 0)),
                "success": bool(rm.success[i]),
                "error": rm.error[i],
                "http_status": int(obj.get("http_status") or 0),
                "finish_reason": obj.get("finish_reason"),
                "sent_s": float(rm.sent_s[i]),
                "queue_ms": float(rm.queue_s[i]) * 1000.0,
                "ttft_ms": float(rm.ttft_s[i]) * 1000.0,
                "tpot_ms": float(tpot[i]) * 1000.0,
                "e2el_ms": float(rm.e2el_s[i]) * 1000.0,
                "itl_ms": itl,
                "itl_count": len(itl),
                "input_tokens": int(rm.input_len[i]),
                "output_tokens": float(out_tokens[i]),
            }
        )
    return rows


def load_requests(results_dir: str | Path) -> pd.DataFrame:
    """One row per request of every run that kept raw records (``*.requests.jsonl``).

    Latencies are recomputed from the raw chunk log under the rules the run recorded, so
    they agree with the run's own statistics. Columns: ``REQUEST_COLUMNS``; ``itl_ms`` holds
    each request's inter-token gaps (a list), failed requests have NaN latencies. A raw file
    that cannot be read is skipped with a warning (the rest of the report still builds).
    """
    manifest = read_manifest(results_dir)
    sim = simulated_engines(manifest)
    rows: list[dict[str, Any]] = []
    for entry in run_entries(results_dir):
        if entry.raw_file is None and entry.file is not None:
            beside = entry.file.with_name(entry.file.stem + RAW_SUFFIX)
            entry.raw_file = beside if beside.is_file() else None
        if entry.raw_file is None or not entry.raw_file.is_file():
            continue
        doc = None
        if entry.file is not None and entry.file.is_file():
            try:
                doc = _read_json(entry.file, "result file")
            except SonicError:
                doc = None
        doc = doc if isinstance(doc, dict) else None
        simulated = (
            entry.simulated
            or entry.engine in sim
            or bool(doc and isinstance(doc.get("sonic"), dict) and doc["sonic"].get("simulated"))
        )
        if doc is not None and entry.dialect is None:
            try:
                entry.dialect = doc_dialect(doc)
            except SonicError:
                pass
        try:
            rows.extend(_request_rows(entry, doc, simulated))
        except (SonicError, OSError, ValueError, TypeError) as exc:
            warnings.warn(f"skipping raw records {entry.raw_file}: {exc}", stacklevel=2)
    df = _frame(rows, REQUEST_COLUMNS)
    df["index"] = df["index"].astype(int)
    df["success"] = df["success"].astype(bool)
    return df
