#!/usr/bin/env bash
# The checks that need an NVIDIA GPU (issues 5 and 7), as one short script for a lent machine.
#
#   bash scripts/device-check.sh prepare   # here: build the Rust test binary into .device/
#   bash scripts/device-check.sh run       # there (the device tool, carry [".device"]):
#                                          # NVML sampler on the real GPU, then the no-GPU
#                                          # tests must skip themselves
#
# The machine lent here cannot reach a package registry, so nothing is installed there: the
# test binary is built here (same x86-64 Linux) and carried.
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
	ls -l .device/sonic-core-tests
	;;
run)
	nvidia-smi -L
	out=${OUT:-/tmp}
	./.device/sonic-core-tests --ignored --exact telemetry::nvml::tests::samples_a_real_gpu \
		--nocapture 2>&1 | tee "$out/nvml.log"
	./.device/sonic-core-tests telemetry 2>&1 | tee -a "$out/nvml.log"
	;;
*)
	echo "usage: $0 prepare|run" >&2
	exit 2
	;;
esac
