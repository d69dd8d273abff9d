#!/usr/bin/env bash
# The troubleshooting guide's story in one command, done right:
#
#   1. the scikit-learn layer (with pandas), slimmed, audited and import-verified: `layerforge build`;
#   2. the model, trained by that layer's own scikit-learn and pandas, so that the handler unpickles
#      exactly what they wrote;
#   3. the function zip (handler + model), its handler and every import checked against the layer
#      and the combined size against Lambda's limit: `layerforge package-function --layer`;
#   4. the handler invoked locally with the sample event, in a clean Python that sees only the zips.
#
# Usage: examples/sklearn-inference/build.sh [OUT]      (default OUT: examples/sklearn-inference/dist)
# LAYERFORGE (default: layerforge) and PYTHON (default: python3.11, the runtime's version) may be set;
# so may LAYERFORGE_INDEX_URL and LAYERFORGE_CACHE_DIR, which layerforge reads.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/dist}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
layerforge="${LAYERFORGE:-layerforge}"
python="${PYTHON:-python3.11}"
runtime="python3.11"
arch="x86_64"
layer_zip="$out/sklearn-inference-$runtime-$arch.zip"
function_zip="$out/sklearn-inference-fn-$runtime-$arch.zip"

# 1. The layer.
"$layerforge" build "$here/layer.toml" --runtime "$runtime" --arch "$arch" --out "$out"

# 2. The model. The function's sources are copied first: the model is a build output, not source.
work="$out/work"
rm -rf "$work"
mkdir -p "$work"
cp -R "$here/function" "$work/function"
"$python" -I -m zipfile -e "$layer_zip" "$work/layer"
# -S: no site-packages of the host, only the layer (PYTHONPATH) and the standard library.
PYTHONPATH="$work/layer/python" "$python" -S "$here/train.py" "$work/function/model.pkl"

# 3. The function zip, checked against the layer it will run with.
"$layerforge" package-function "$work/function" --handler handler.lambda_handler \
  --name sklearn-inference-fn --layer "$layer_zip" --runtime "$runtime" --arch "$arch" --out "$out"
rm -rf "$work"

# 4. The sample event, the way Lambda would run it.
"$python" -I -S "$here/run_local.py" --function "$function_zip" --layer "$layer_zip" \
  --event "$here/events/sample.json"
