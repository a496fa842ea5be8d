"""GPU memory handling between engines, on a machine with an NVIDIA GPU: nvidia-smi is read,
and after a server that holds GPU memory is stopped the suite waits until the memory is back.

The "server" allocates device memory through the CUDA driver API (libcuda via ctypes, no
framework needed) and answers /health, like an engine that has loaded its weights.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time

import pytest

from sonic.suite.lifecycle import (
    ServerProcess,
    base_url,
    free_port,
    gpu_info,
    gpu_memory_used,
    wait_gpu_release,
    wait_ready,
)

pytestmark = pytest.mark.gpu

HOLDER = textwrap.dedent(
    """
    import ctypes, sys
    from http.server import BaseHTTPRequestHandler, HTTPServer
    cuda = ctypes.CDLL("libcuda.so.1")
    assert cuda.cuInit(0) == 0
    dev, ctx, ptr = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    assert cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
    assert cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, dev) == 0
    assert cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(int(sys.argv[2]) << 20)) == 0
    print("allocated", flush=True)

    class H(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass
        def do_GET(self):
            body = b'{"data": [{"id": "holder"}]}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
    """
)


def _have_gpu() -> bool:
    if shutil.which("nvidia-smi") is None or gpu_info() is None:
        return False
    try:
        import ctypes

        ctypes.CDLL("libcuda.so.1")
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _have_gpu(), reason="needs an NVIDIA GPU, nvidia-smi and libcuda")
def test_waits_until_a_stopped_server_releases_gpu_memory(tmp_path):
    gpus = gpu_info()
    assert gpus and gpus[0]["name"] and int(gpus[0]["memory_total_mib"]) > 1024
    baseline = gpu_memory_used()
    assert baseline is not None
    script = tmp_path / "holder.py"
    script.write_text(HOLDER)
    port = free_port()
    mib = 4096
    server = ServerProcess(
        "holder", [sys.executable, str(script), str(port), str(mib)], tmp_path / "h.log", os.environ
    ).start()
    try:
        wait_ready(base_url("127.0.0.1", port), "/health", 60.0, server)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            used = gpu_memory_used()
            if used and used[0] >= baseline[0] + mib * 0.9:
                break
            time.sleep(0.2)
        else:
            pytest.fail(
                f"nvidia-smi never showed the allocation: {gpu_memory_used()} vs {baseline}"
            )
    finally:
        server.stop(timeout_s=10)
    released = wait_gpu_release(baseline, timeout_s=60, slack_mib=512)
    assert released is not None and released["released"] is True, released
    assert released["used_mib"][0] <= baseline[0] + 512
