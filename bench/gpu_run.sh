#!/usr/bin/env bash
# A GPU session's one run (issue 23): installs what bench/gpu_carry.sh put in .whl/ (where carried), then
# bench/gpu_extract.py (arguments passed on), the GPU-only tests and on a GPU the profile with the encoder as
# CUDA graphs; logs and the benchmark's JSON go to $OUT.
#   bash bench/gpu_run.sh                                              # on the lent GPU machine, carrying .whl
#   PYTHON=.venv/bin/python bash bench/gpu_run.sh --features 8 --model tiny-random-bert --max-length 128 \
#       --precision fp32 --compile off --bench-features 2              # a small try on a CPU
set -euo pipefail
python=${PYTHON:-python3}
if [ -d .whl/wheels ]; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/wheels/*.whl
    cp -r .whl/site/. /tmp/site/
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
out=${OUT:-$(mktemp -d)}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null | tee "$out/gpu.txt" || true
"$python" bench/gpu_extract.py "$@" 2>&1 | tee "$out/gpu_extract.log"
cp bench/results/extract.json "$out/"
"$python" -m pytest -q -p no:cacheprovider tests/extract/test_profile.py 2>&1 | tee "$out/tests.log"
if "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then  # the encoder as CUDA graphs
    "$python" bench/profile_extract.py --model bert-base-random --features 96 --precision bf16 --compile graphs \
        --scaling map --bn-mode eval 2>&1 | tee "$out/profile_graphs.log" || true
fi
echo "logs in $out"
