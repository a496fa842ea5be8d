"""The sim's prefix cache end to end (`python -m sonic sim` as a separate process, plain HTTP).

The oracle is computed here from the requests alone: each prompt is tokenized with the same
tokenizer file (the `tokenizers` library directly, not the sim), split into whole blocks, and
a block counts as cached when the same prefix up to its end was sent before (salt included);
as in vLLM the last prompt token is always computed, so a hit covers at most len - 1 tokens,
and a request's answer (all but its last token) is held after its prompt.
"""

from __future__ import annotations

import http.client
import json
import random
import statistics
import time
from urllib.parse import urlparse

import pytest

from simproc import TOKENIZER, scrape, sim_process

WORDS = (
    "the river stone summer winter morning evening garden window silver golden quiet bright "
    "gentle wander light time old new small great long little world house water"
).split()


class Oracle:
    """Expected cached tokens of a request sequence, from the token ids alone."""

    def __init__(self, block: int) -> None:
        self.block = block
        self.seen: set[tuple[str | None, tuple[int, ...]]] = set()

    def send(self, ids: list[int], salt: str | None = None) -> int:
        b = self.block
        hit = 0
        for i in range((len(ids) - 1) // b):
            if (salt, tuple(ids[: (i + 1) * b])) not in self.seen:
                break
            hit += 1
        self.hold(ids, salt=salt)
        return hit * b

    def hold(self, ids: list[int], answer: list[int] = (), salt: str | None = None) -> None:
        """Hold the whole blocks of the prompt and its answer but for the answer's last token."""
        held = [*ids, *answer[:-1]]
        for i in range(len(held) // self.block):
            self.seen.add((salt, tuple(held[: (i + 1) * self.block])))


def _tokenizer():
    import tokenizers

    return tokenizers.Tokenizer.from_file(str(TOKENIZER / "tokenizer.json"))


def _conn(url: str) -> http.client.HTTPConnection:
    u = urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def post(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[int, dict]:
    conn = _conn(url)
    try:
        conn.request(
            "POST", path, json.dumps(body), {"content-type": "application/json", **(headers or {})}
        )
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def stream(url: str, path: str, body: dict, headers: dict | None = None) -> tuple[float, dict, str]:
    """Stream with usage; (seconds from sending to the first token, the final usage, text)."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    conn = _conn(url)
    try:
        t0 = time.perf_counter()
        conn.request(
            "POST", path, json.dumps(body), {"content-type": "application/json", **(headers or {})}
        )
        resp = conn.getresponse()
        assert resp.status == 200
        ttft, usage, text = None, None, []
        while line := resp.readline():
            if not line.startswith(b"data: ") or line.strip() == b"data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk["choices"]:
                if ttft is None:
                    ttft = time.perf_counter() - t0
                c = chunk["choices"][0]
                text.append(c["text"] if "text" in c else c["delta"].get("content") or "")
            if chunk.get("usage"):
                usage = chunk["usage"]
        assert ttft is not None and usage is not None
        return ttft, usage, "".join(text)
    finally:
        conn.close()


def counters(url: str) -> tuple[float, float]:
    m = scrape(url)
    return m["vllm:prefix_cache_queries_total"], m["vllm:prefix_cache_hits_total"]


def _words(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _workload(seed: int) -> list[str]:
    """Prompts with a known prefix structure: shared documents with different questions, and
    sessions whose prompt grows by a turn each time, interleaved."""
    rng = random.Random(seed)
    docs = [_words(rng, rng.randint(20, 150)) for _ in range(5)]
    singles = [
        f"{rng.choice(docs)} question {i}: {_words(rng, rng.randint(1, 30))}" for i in range(30)
    ]
    sessions = []
    for s in range(4):
        text, turns = f"session {s} {_words(rng, 40)}", []
        for _ in range(4):
            text = f"{text} user: {_words(rng, rng.randint(5, 40))} assistant: {_words(rng, 20)}"
            turns.append(text)
        sessions.append(turns)
    # Interleave, keeping each session's turns in order.
    prompts, queues = [], [list(singles), *sessions]
    while any(queues):
        q = rng.choice([q for q in queues if q])
        prompts.append(q.pop(0))
    return prompts


@pytest.mark.parametrize("block", [16, 5])
def test_hit_rate_matches_the_workload(block):
    tok = _tokenizer()
    oracle = Oracle(block)
    prompts = _workload(seed=block)
    flags = [
        "--ttft-ms",
        "0",
        "--itl-ms",
        "0",
        "--output-len",
        "2",
        "--prefix-block-size",
        str(block),
    ]
    with sim_process(*flags) as url:
        q0, h0 = counters(url)
        assert (q0, h0) == (0, 0)
        queried = cached = expected = 0
        for i, prompt in enumerate(prompts):
            ids = tok.encode(prompt, add_special_tokens=True).ids
            want = oracle.send(ids)
            body = {"prompt": prompt, "max_tokens": 2}
            if i % 2:
                _, usage, text = stream(url, "/v1/completions", body)
            else:
                status, doc = post(url, "/v1/completions", body)
                assert status == 200
                usage, text = doc["usage"], doc["choices"][0]["text"]
            oracle.hold(ids, tok.encode(text, add_special_tokens=False).ids)
            assert usage["prompt_tokens"] == len(ids)
            got = usage["prompt_tokens_details"]["cached_tokens"]
            assert got == want, (i, prompt)
            queried += usage["prompt_tokens"]
            cached += got
            expected += want
        q, h = counters(url)
    rate = expected / queried
    assert 0.3 < rate < 0.9  # the workload really has reuse, and misses
    assert abs(cached / queried - rate) <= 0.01 * rate
    assert q == queried
    assert abs(h / q - rate) <= 0.01 * rate


@pytest.mark.parametrize("live", [False, True])
def test_chat_turns_hit_their_history(live):
    """Chat prompts are cached by the token ids of the templated conversation (ids from the
    sim's /tokenize, which applies the same template as generation). With live history each
    turn carries the sim's own answer back, whose blocks it computed and holds."""
    tok = _tokenizer()
    oracle, prompt_only = Oracle(16), Oracle(16)
    rng = random.Random(7)
    system = {"role": "system", "content": _words(rng, 60)}
    with sim_process("--ttft-ms", "0", "--itl-ms", "0", "--output-len", "24") as url:
        messages = [system]
        hits, without_answers = [], []
        for _ in range(4):
            messages = [*messages, {"role": "user", "content": _words(rng, 25)}]
            status, tokd = post(url, "/tokenize", {"messages": messages})
            assert status == 200
            want = oracle.send(tokd["tokens"])
            without_answers.append(prompt_only.send(tokd["tokens"]))
            body = {"messages": messages, "max_tokens": 24}
            _, usage, text = stream(url, "/v1/chat/completions", body)
            assert usage["prompt_tokens"] == tokd["count"]
            assert usage["prompt_tokens_details"]["cached_tokens"] == want
            oracle.hold(tokd["tokens"], tok.encode(text, add_special_tokens=False).ids)
            hits.append(want)
            answer = text if live else _words(rng, 15)
            messages = [*messages, {"role": "assistant", "content": answer}]
        assert hits[0] == 0 and all(h > 0 for h in hits[1:])
        if live:  # the answers' blocks hit too
            assert all(h > w for h, w in zip(hits[1:], without_answers[1:])), (
                hits,
                without_answers,
            )
        else:
            assert hits == without_answers
        # Non-streamed chat reports it too: the conversation with the last answer in it.
        status, tokd = post(url, "/tokenize", {"messages": messages})
        want = oracle.send(tokd["tokens"])
        status, doc = post(url, "/v1/chat/completions", {"messages": messages, "max_tokens": 3})
        assert status == 200
        assert doc["usage"]["prompt_tokens_details"]["cached_tokens"] == want > 0


# TTFT: a prompt of SHARED + OWN token ids, then another with the same SHARED prefix. Prefill
# costs 1 ms per uncached token, so the second one's TTFT is lower by SHARED ms exactly.
SHARED, OWN, US_PER_TOKEN = 160, 40, 1000.0


@pytest.mark.parametrize(
    "mode,flags,base_ms",
    [
        (
            "exact",
            ["--ttft-ms", "20", "--itl-ms", "1", "--exact-prefill-us-per-token", str(US_PER_TOKEN)],
            20.0,
        ),
        (
            "batching",
            [
                "--step-base-ms", "2", "--decode-us-per-seq", "0",
                "--prefill-us-per-token", str(US_PER_TOKEN), "--max-num-batched-tokens", "4096",
            ],
            2.0,
        ),
    ],
)  # fmt: skip
def test_cached_prefix_lowers_ttft_by_its_prefill_cost(mode, flags, base_ms):
    cold_ms = base_ms + (SHARED + OWN) * US_PER_TOKEN / 1e3
    warm_ms = base_ms + OWN * US_PER_TOKEN / 1e3
    diffs = []
    with sim_process(*flags, "--output-len", "2") as url:
        for rep in range(3):
            shared = [1000 + rep * 300 + i for i in range(SHARED)]
            body = {"prompt": [*shared, *range(10, 10 + OWN)], "max_tokens": 2}
            cold, u1, _ = stream(url, "/v1/completions", body)
            body = {"prompt": [*shared, *range(500, 500 + OWN)], "max_tokens": 2}
            warm, u2, _ = stream(url, "/v1/completions", body)
            assert u1["prompt_tokens_details"]["cached_tokens"] == 0
            assert u2["prompt_tokens_details"]["cached_tokens"] == SHARED
            # The sim never answers early: each TTFT is at least what the model says.
            assert cold * 1e3 >= cold_ms - 1.0, mode
            assert warm * 1e3 >= warm_ms - 1.0, mode
            diffs.append((cold - warm) * 1e3)
    # The median of three pairs: one scheduling hiccup on a busy machine does not decide it.
    assert statistics.median(diffs) == pytest.approx(cold_ms - warm_ms, abs=30.0), diffs


def test_cache_salt_isolates():
    prompt = list(range(100, 164))  # 4 blocks
    body = {"prompt": prompt, "max_tokens": 1}

    def cached(extra: dict, headers: dict | None = None) -> int:
        status, doc = post(url, "/v1/completions", {**body, **extra}, headers)
        assert status == 200, doc
        return doc["usage"]["prompt_tokens_details"]["cached_tokens"]

    with sim_process("--ttft-ms", "0", "--itl-ms", "0") as url:
        assert cached({"cache_salt": "run-a"}) == 0
        assert cached({"cache_salt": "run-b"}) == 0  # a different salt: no shared blocks
        assert cached({}) == 0  # nor without one
        assert cached({"cache_salt": "run-a"}) == 48  # 63 tokens can hit: 3 whole blocks
        # MAX's header salt is the same salt as the body field's.
        assert cached({}, {"X-Cache-Salt": "run-b"}) == 48
        assert cached({}, {"X-Cache-Salt": "run-c"}) == 0
        status, doc = post(url, "/v1/completions", {**body, "cache_salt": ""})
        assert status == 400 and doc["error"]["param"] == "cache_salt"
        q, h = counters(url)
        assert (q, h) == (6 * 64, 2 * 48)


def test_an_answer_carried_back_hits():
    """A completion's answer (all but its last token) is held after its prompt, as an engine
    that computed its KV would: a prompt that repeats prompt + answer hits on it."""
    tok = _tokenizer()
    prompt = list(range(300, 340))  # 40 tokens: 2 whole blocks of 16
    with sim_process("--ttft-ms", "0", "--itl-ms", "0", "--output-len", "20") as url:
        status, doc = post(url, "/v1/completions", {"prompt": prompt, "max_tokens": 20})
        assert status == 200
        answer = tok.encode(doc["choices"][0]["text"], add_special_tokens=False).ids
        assert len(answer) == 20
        # 40 + 19 computed tokens: 3 whole blocks (the prompt alone had 2).
        body = {"prompt": [*prompt, *answer, 7, 8, 9], "max_tokens": 1}
        status, doc = post(url, "/v1/completions", body)
        assert doc["usage"]["prompt_tokens_details"]["cached_tokens"] == 48


def test_eviction_at_capacity_and_reset():
    a = list(range(1000, 1065))  # 4 whole blocks + 1 token
    b = list(range(2000, 2065))

    def cached(prompt: list[int]) -> int:
        status, doc = post(url, "/v1/completions", {"prompt": prompt, "max_tokens": 1})
        assert status == 200
        return doc["usage"]["prompt_tokens_details"]["cached_tokens"]

    flags = ["--ttft-ms", "0", "--itl-ms", "0", "--prefix-cache-blocks", "6"]
    with sim_process(*flags) as url:
        assert json.loads(_get(url, "/version"))["prefix_caching"] == {
            "block_size": 16,
            "capacity_blocks": 6,
        }
        assert cached(a) == 0
        assert cached(a) == 64
        # b's 4 blocks need room: a's two least recently used (its tail) go, its head stays.
        assert cached(b) == 0
        assert cached(a) == 32
        # a's re-insert evicted b's tail in turn.
        assert cached(b) == 32
        status, _ = post(url, "/reset_prefix_cache", {})
        assert status == 200
        assert cached(b) == 0


def test_disabled_and_sessions_counted():
    prompt = list(range(50, 150))
    with sim_process("--ttft-ms", "0", "--itl-ms", "0", "--no-enable-prefix-caching") as url:
        for sid in ("s1", "s2", "s1"):
            status, doc = post(
                url, "/v1/completions", {"prompt": prompt, "max_tokens": 1}, {"X-Session-ID": sid}
            )
            assert status == 200
            assert doc["usage"]["prompt_tokens_details"]["cached_tokens"] == 0
        m = scrape(url)
        assert json.loads(_get(url, "/version"))["prefix_caching"] is None
    assert m["vllm:prefix_cache_queries_total"] == 0 and m["vllm:prefix_cache_hits_total"] == 0
    assert m["sonic_sim:session_requests_total"] == 3
    assert m["sonic_sim:sessions_seen_total"] == 2


def test_bad_prefix_options_exit_2():
    from simproc import run_sonic

    for args, needle in (
        (["--prefix-block-size", "0"], "prefix_block_size"),
        (["--exact-prefill-us-per-token", "5"], "exact mode"),
    ):
        r = run_sonic("sim", "--port", "0", *args, timeout=60)
        assert r.returncode == 2, r.stderr
        assert needle in r.stderr and "Traceback" not in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1


def _get(url: str, path: str) -> str:
    conn = _conn(url)
    try:
        conn.request("GET", path)
        return conn.getresponse().read().decode()
    finally:
        conn.close()


def test_in_process_options():
    """The same options from Python (`sonic.sim.start`), bad values naming the field."""
    from sonic import _core, sim

    with pytest.raises(_core.CoreError, match="prefix_block_size"):
        sim.start(prefix_block_size=0)
    with sim.start(ttft_ms=0, itl_ms=0, prefix_block_size=4, prefix_cache_blocks=2) as server:
        version = json.loads(_get(server.url, "/version"))
        assert version["prefix_caching"] == {"block_size": 4, "capacity_blocks": 2}
        body = {"prompt": list(range(9)), "max_tokens": 1}
        first = post(server.url, "/v1/completions", body)[1]
        assert first["usage"]["prompt_tokens_details"] == {"cached_tokens": 0}
        doc = post(server.url, "/v1/completions", body)[1]
        assert doc["usage"]["prompt_tokens_details"]["cached_tokens"] == 8
