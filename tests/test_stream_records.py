"""Streamed records (--stream-records): the core hands finished requests over while the run
goes, they are written to an Arrow file, and the metrics computed from that file match the
in-memory metrics of the same records (per-request values exactly, ITL percentiles within
the stated HDR precision)."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest

from simproc import TOKENIZER, load_json, run_sonic, sim_process
from sonic import _core, client, recordfile
from sonic.metrics import MetricRules, Retokenize, SkipRules, compute_metrics
from sonic.records import RunRecords


def _config(url: str, n: int, *, rate: float | None = 400.0, stream: bool = False, **kw):
    return client.RunConfig(
        base_url=url,
        endpoint="/v1/completions",
        api="completions",
        model="sonic-sim",
        request_id_prefix="s-",
        timeout_s=30.0,
        body=client.BodyOptions(include_usage=True, fields={"ignore_eos": True}),
        requests=[client.RequestSpec(prompt=f"prompt {i}", max_tokens=12) for i in range(n)],
        schedule=client.ScheduleSpec(request_rate=rate, burstiness=None),
        max_concurrency=16,
        stream_records=stream,
        **kw,
    )


def _count(texts):
    return [len(t.split()) for t in texts]


def _write_shuffled(records: RunRecords, path, seed: int = 0) -> RunRecords:
    """The in-memory run's records written as a streamed run would be: batches of varied
    sizes, in an order that is not the record order."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(records.n)
    writer = recordfile.RecordWriter(path, records.n)
    at = 0
    while at < records.n:
        size = int(rng.integers(1, 40))
        idx = np.sort(order[at : at + size])
        writer.append(_subset(records, idx), idx)
        at += size
    return writer.records(
        {"t0_unix_ns": records.t0_unix_ns, "t0_mono_ns": records.t0_mono_ns, "cancelled": False}
    )


def _subset(r: RunRecords, idx: np.ndarray) -> RunRecords:
    """Rows ``idx`` of ``r`` as a core batch would carry them."""
    offs = np.asarray(r.chunk_offsets)
    parts = [np.arange(offs[i], offs[i + 1]) for i in idx]
    chunks = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
    counts = np.array([len(p) for p in parts], dtype=np.int64)
    tot = np.asarray(r.chunk_text_offsets)
    lengths = tot[chunks + 1] - tot[chunks]
    text = b"".join(r.text[int(tot[c]) : int(tot[c + 1])] for c in chunks)
    return RunRecords(
        t0_unix_ns=0,
        t0_mono_ns=0,
        cancelled=False,
        intended_ns=r.intended_ns[idx],
        sent_ns=r.sent_ns[idx],
        end_ns=r.end_ns[idx],
        http_status=r.http_status[idx],
        prompt_tokens=r.prompt_tokens[idx],
        completion_tokens=r.completion_tokens[idx],
        error=[r.error[i] for i in idx],
        finish_reason=[r.finish_reason[i] for i in idx],
        chunk_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        chunk_ns=np.asarray(r.chunk_ns)[chunks],
        chunk_kind=np.asarray(r.chunk_kind)[chunks],
        chunk_text_offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        text=text,
        session_index=r.session_index[idx],
        turn_index=r.turn_index[idx],
        cached_tokens=r.cached_tokens[idx],
        extra={"dispatched_ns": np.asarray(r.extra["dispatched_ns"])[idx]},
    )


@pytest.fixture(scope="module")
def faulty_run():
    """One in-memory run with failures mixed in (500s and resets)."""
    flags = ("--ttft-ms", "2", "--itl-ms", "1", "--output-len", "12", "--fail-500", "0.1")
    with sim_process(*flags, "--fail-reset", "0.05", "--seed", "5") as url:
        records = client.run(_config(url, 300))
    assert any(e is not None for e in records.error), "the faults must show"
    return records


@pytest.mark.parametrize(
    "rules",
    [MetricRules(), MetricRules(itl_rule="text", step_tpot=True, require_text=True)],
    ids=["vllm-rules", "max-rules"],
)
def test_streamed_metrics_match_the_in_memory_ones(faulty_run, tmp_path, rules):
    records = faulty_run
    streamed = _write_shuffled(records, tmp_path / "r.arrow")
    assert streamed.chunks_file is not None and streamed.chunk_offsets is None
    lens = np.arange(records.n) % 7 + 3
    skip = SkipRules(first=5, last=5)
    # A sample of the answers is re-tokenized (all of them under MAX's rules): the batches of
    # the file pick the same ones as one pass in memory.
    kw = dict(count_tokens=_count, skip=skip, percentiles=(50, 99), retokenize=Retokenize(37))
    a = compute_metrics(records, rules, lens, **kw)
    b = compute_metrics(streamed, rules, lens, **kw)
    assert a.tokens == b.tokens
    # (failed and skipped requests of the 37 are not counted)
    sampled = 20 <= a.tokens.retokenized <= 37
    assert sampled if rules.token_count == "usage" else a.tokens.retokenized > 37
    ra, rb = a.requests, b.requests
    assert rb.streamed and not ra.streamed
    for name in ("success", "output_len", "input_len", "retok_output_len", "nonempty_chunks"):
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
    for name in ("ttft_s", "e2el_s", "tpot_s", "queue_s", "sent_s"):
        np.testing.assert_array_equal(getattr(ra, name), getattr(rb, name), err_msg=name)
    assert ra.error == rb.error
    np.testing.assert_array_equal(ra.chunks.itl_counts, rb.chunks.itl_counts)
    for name in ("completed", "failed", "total_output_tokens", "max_output_tokens_per_s"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.duration_s == b.duration_s
    for name in ("ttft", "tpot", "e2el"):
        assert a.stats[name] == b.stats[name], name
    in_run = np.repeat(a.measured, np.diff(ra.itl_offsets))
    pools = {"itl": ra.itl_s[in_run]}
    if rules.step_tpot:
        keep = in_run & (ra.itl_tokens > 0)
        pools["step_tpot"] = ra.itl_s[keep] / ra.itl_tokens[keep]
    for name, values in pools.items():
        x, y = a.stats[name], b.stats[name]
        assert x.n == y.n > 0, name
        assert y.mean == pytest.approx(x.mean, rel=1e-12)
        assert y.std == pytest.approx(x.std, rel=1e-9)
        assert (y.min, y.max) == pytest.approx((x.min, x.max), rel=1e-12)
        for q in (50.0, 99.0):
            # HDR at 3 digits: the sample at that rank, rounded up to its bucket's top (at most
            # 0.1 % above; 1 ns of rounding to the histogram's unit below); numpy interpolates
            # between the two samples around the rank.
            low = np.percentile(values, q, method="lower")
            high = np.percentile(values, q, method="higher")
            assert low - 1e-9 <= y.p(q) <= high * (1 + 1e-3), (name, q, low, high, y.p(q))
    assert b.requests.chunks.precision == "hdr-3" and a.requests.chunks.precision == "exact"


def test_the_core_hands_records_over_while_the_run_goes():
    """take_finished returns requests before the run ends; each record comes back exactly once
    (batches during the run, the rest with the end); plain requests and sessions."""
    with sim_process("--ttft-ms", "5", "--itl-ms", "2", "--output-len", "12") as url:
        plain = _config(url, 120, rate=60.0, stream=True)
        turns = [client.Turn(content=f"turn {k}", max_tokens=4) for k in range(3)]
        sessions = client.RunConfig(
            base_url=url,
            endpoint="/v1/chat/completions",
            api="chat",
            model="sonic-sim",
            sessions=[client.Session(turns=turns) for _ in range(30)],
            schedule=client.ScheduleSpec(request_rate=20.0, burstiness=None),
            stream_records=True,
        )
        for config, total in ((plain, 120), (sessions, 90)):
            handle = _core.start_run(config.to_json())
            taken, during = [], 0
            while True:
                final = handle.wait(0.05)
                batch = handle.take_finished()
                if batch is not None:
                    taken.append(batch)
                    during += final is None
                if final is not None:
                    break
            assert during >= 2, "records came back while the run went"
            everything = np.concatenate([b["record_index"] for b in taken + [final]])
            assert sorted(everything.tolist()) == list(range(total))
            kinds = np.concatenate([b["turn_index"] for b in taken + [final]])
            if config.sessions:
                assert sorted(np.unique(kinds).tolist()) == [0, 1, 2]
            for b in taken:
                assert all(e is None for e in b["error"])
                assert b["chunk_offsets"][-1] == b["chunk_ns"].shape[0] > 0


def test_histogram_binding_is_exact_in_count_and_refuses_bad_input():
    h = _core.Histogram()
    assert h.significant_digits == 3 and len(h) == 0 and h.percentile(50.0) is None
    values = np.arange(1, 10_001, dtype=np.int64) * 1000
    h.record(values)
    assert len(h) == 10_000 and h.min == 1000
    assert h.percentile(99.0) == pytest.approx(np.percentile(values, 99), rel=1e-3)
    with pytest.raises(_core.CoreError, match="negative"):
        h.record(np.array([-5], dtype=np.int64))
    with pytest.raises(_core.CoreError, match="percentile"):
        h.percentile(120.0)
    with pytest.raises(_core.CoreError, match="significant_digits"):
        _core.Histogram(9)


BASE = [
    "--model", "sonic-sim",
    "--tokenizer", str(TOKENIZER),
    "--dataset-name", "random",
    "--random-input-len", "16",
    "--random-output-len", "16",
    "--ignore-eos",
    "--disable-tqdm",
    "--request-rate", "100",
    "--num-prompts", "150",
    "--skip-test-prompt",
    "--no-self-calibrate",
]  # fmt: skip


def test_sonic_run_streams_records_beside_the_result(tmp_path):
    """`sonic run --stream-records`: the Arrow file beside the result (read by pandas), texts
    only with --save-detailed, the same counts as an in-memory run, no scratch file left."""
    import pandas as pd

    with sim_process("--ttft-ms", "3", "--itl-ms", "1", "--output-len", "16") as url:
        for name, extra in (("plain", ["--retokenize", "20"]), ("detailed", ["--save-detailed"])):
            cp = run_sonic(
                "--base-url", url, *BASE, "--stream-records", *extra, "--save-result",
                "--result-dir", str(tmp_path), "--result-filename", f"{name}.json",
            )  # fmt: skip
            assert cp.returncode == 0, cp.stderr
        cp = run_sonic(
            "--base-url", url, *BASE, "--save-result", "--save-detailed",
            "--result-dir", str(tmp_path), "--result-filename", "memory.json",
        )  # fmt: skip
        assert cp.returncode == 0, cp.stderr
    memory = load_json(tmp_path / "memory.json")
    for name in ("plain", "detailed"):
        doc = load_json(tmp_path / f"{name}.json")
        info = doc["sonic"]["records_file"]
        assert info["chunk_percentiles"] == "hdr-3"
        assert info["generated_text"] is (name == "detailed")
        frame = pd.read_feather(tmp_path / info["file"])
        assert len(frame) == 150 and sorted(frame["record_index"]) == list(range(150))
        assert ("text" in frame.columns) is (name == "detailed")
        assert frame["chunk_ns"].map(len).sum() >= 150 * 16
        for key in ("completed", "failed", "total_output_tokens", "total_input_tokens"):
            assert doc[key] == memory[key], key
    plain, detailed = load_json(tmp_path / "plain.json"), load_json(tmp_path / "detailed.json")
    counts = {k: d["sonic"]["token_counts"] for k, d in (("plain", plain), ("memory", memory))}
    assert (counts["plain"]["retokenize"], counts["plain"]["retokenized"]) == ("20", 20)
    assert counts["plain"]["output_compared"] == 20
    assert (counts["memory"]["retokenize"], counts["memory"]["retokenized"]) == ("100", 100)
    assert len(detailed["ttfts"]) == 150 and "itls" not in detailed
    assert "itls" in memory and "generated_texts" in memory
    left = [p.name for p in tmp_path.iterdir() if p.name.startswith(".sonic-records-")]
    assert left == [], left


def test_stream_records_is_refused_with_workers():
    cp = run_sonic("--base-url", "http://127.0.0.1:9", *BASE, "--stream-records", "--workers", "2")
    assert cp.returncode != 0 and "Traceback" not in cp.stderr
    assert "--stream-records is not available with --workers" in cp.stderr


def test_a_lost_batch_is_recorded_as_lost(tmp_path):
    """A record that never reached the file (Ctrl-C between taking and writing) is a failed
    request with the reason, not a run that cannot be saved."""
    writer = recordfile.RecordWriter(tmp_path / "r.arrow", 3)
    records = writer.records({"t0_unix_ns": time.time_ns(), "t0_mono_ns": 1, "cancelled": True})
    assert records.error == [recordfile.LOST] * 3 and records.n == 3


def test_a_big_request_list_is_handed_to_the_core_as_one_exact_json():
    """The requests' JSON is written in parts (no dict per request held at once): every
    request is there in order, and a body field named "requests" is left alone."""
    import json

    n = client.REQUESTS_PER_PART * 2 + 1
    config = client.RunConfig(
        base_url="http://127.0.0.1:9",
        endpoint="/v1/completions",
        api="completions",
        body=client.BodyOptions(fields={"requests": []}),
        requests=[client.RequestSpec(prompt=f"p{i}", max_tokens=i % 5) for i in range(n)],
    )
    doc = json.loads(config.to_json())
    assert [r["prompt"] for r in doc["requests"]] == [f"p{i}" for i in range(n)]
    assert doc["requests"][-1]["max_tokens"] == (n - 1) % 5
    assert doc["body"]["fields"] == {"requests": []}
    empty = json.loads(client.RunConfig(base_url="x", endpoint="/", api="completions").to_json())
    assert empty["requests"] == []
    with pytest.raises(_core.CoreError, match="invalid run configuration"):
        client.RunConfig(
            base_url="x",
            endpoint="/",
            api="completions",
            requests=[client.RequestSpec(prompt="p", messages=[{"x": float("nan")}])],
        ).to_json()


def test_requests_go_to_the_core_in_parts_and_errors_name_the_request_in_the_run():
    """The core takes the requests as JSON arrays apart from the configuration (parsed when the
    run reaches them); a bad request deep in a later part is refused before anything is sent,
    named by its index in the run."""
    import json

    per = client.REQUESTS_PER_PART
    requests = [client.RequestSpec(prompt=f"p{i}", max_tokens=2) for i in range(per + 7)]
    config = client.RunConfig(
        base_url="http://127.0.0.1:9", endpoint="/v1/completions", api="completions",
        requests=requests,
    )  # fmt: skip
    head, parts = config.to_core()
    assert json.loads(head)["requests"] == []
    assert iter(parts) is parts  # made one at a time, as the core takes them
    assert [len(json.loads(p)) for p in parts] == [per, 7]
    bad = list(requests)
    bad[per + 5] = client.RequestSpec(prompt=None, max_tokens=2)
    with pytest.raises(_core.CoreError, match=rf"requests\[{per + 5}\]: .*needs a prompt"):
        client.run(replace(config, requests=bad))
    head, made = replace(config, requests=requests[:3]).to_core()
    parts = list(made)
    broken = parts[0].replace('"max_tokens":2', '"max_tokens":"two"', 1)
    with pytest.raises(_core.CoreError, match=r"requests\[0\]\.max_tokens: invalid type"):
        _core.start_run(head, [broken])
    with pytest.raises(_core.CoreError, match=r"requests\[3\]\.max_tokens: invalid type"):
        _core.start_run(head, [parts[0], broken])
    with pytest.raises(_core.CoreError, match=r"requests \(from request 3\)"):
        _core.start_run(head, iter([parts[0], "not json"]))


def test_the_report_reads_send_and_end_times_from_either_raw_records_file(faulty_run, tmp_path):
    """The report's timeline takes each request's send and end from the run's raw records: the
    JSON lines of --save-detailed, or a streamed run's Arrow file (written out of order)."""
    from sonic import results
    from sonic.report.plots import _raw_times

    records = faulty_run
    streamed = _write_shuffled(records, tmp_path / f"run{recordfile.SUFFIX}")
    lines = results.write_raw_records(tmp_path / "run.jsonl", records)
    for got in (_raw_times(streamed.chunks_file), _raw_times(lines)):
        for name in ("sent_ns", "end_ns"):
            np.testing.assert_array_equal(got[name], np.asarray(getattr(records, name)))
