#!/usr/bin/env bash
# A GPU session's one clustering run (issue 22): installs what bench/gpu_carry.sh put in .whl/ (where carried), then
# bench/gpu_cluster.py (arguments passed on: 3,000,000 rows by default); the log and the JSON go to $OUT.
#   bash bench/gpu_cluster.sh                                    # on the lent GPU machine, carrying .whl
#   PYTHON=.venv/bin/python bash bench/gpu_cluster.sh --rows 20000 --dim 256 --cpu-only   # a small try on a CPU
set -euo pipefail
python=${PYTHON:-python3}
if [ -d .whl/wheels ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/wheels/*.whl
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$out/gpu.txt" || true
"$python" bench/gpu_cluster.py --json "$out/gpu_cluster.json" "$@" 2>&1 | tee "$out/gpu_cluster.log"
echo "logs in $out"
