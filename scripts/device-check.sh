#!/usr/bin/env bash
# The checks that need an NVIDIA GPU (issues 5 and 7), as one short script for a lent machine.
#
#   make install && bash scripts/device-check.sh prepare
#       here: the Rust test binary into .device/ (the extension module is built by make install)
#   bash scripts/device-check.sh run
#       there, with the device tool and carry [".device", "python/sonic/_core.abi3.so"]: the
#       Rust NVML test on the real GPU, then the Python GPU tests (pytest -m gpu) with the
#       machine's own python3, which already has numpy, psutil, prometheus_client and pytest
#
# The machine lent here cannot reach a package registry, so nothing is installed there: what
# is compiled is built here (x86-64 Linux; the extension is abi3, any Python >= 3.9) and
# carried. vLLM and MAX are not on that machine and are too large to carry (gigabytes against
# a 64 MiB limit), so the GPU engine comparison of issue 7 cannot run there.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
prepare)
	mkdir -p .device
	grep -qx '/.device/' .git/info/exclude 2>/dev/null || echo '/.device/' >>.git/info/exclude
	bin=$(cargo test --release --lib --no-run --message-format=json 2>/dev/null |
		python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["cdylib", "rlib"]:
        print(m["executable"])')
	cp "$bin" .device/sonic-core-tests
	test -f python/sonic/_core.abi3.so || { echo "run make install first" >&2; exit 1; }
	ls -l .device/sonic-core-tests python/sonic/_core.abi3.so
	;;
run)
	# Every step runs; the exit status says whether all passed.
	set +e
	status=0
	out=${OUT:-/tmp}
	nvidia-smi -L || status=1
	./.device/sonic-core-tests --ignored --exact telemetry::nvml::tests::samples_a_real_gpu \
		--nocapture 2>&1 | tee "$out/nvml.log" || status=1
	./.device/sonic-core-tests telemetry 2>&1 | tee -a "$out/nvml.log" || status=1
	PYTHONPATH=python python3 -m pytest -q -ra -p no:cacheprovider -m gpu \
		tests/test_telemetry_gpu.py tests/test_suite_gpu.py 2>&1 | tee "$out/pytest-gpu.log" ||
		status=1
	exit "$status"
	;;
*)
	echo "usage: $0 prepare|run" >&2
	exit 2
	;;
esac
