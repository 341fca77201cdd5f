# Shared set-up of the GPU checks (sourced by gpu_check.sh and gpu_check_vivid.sh): $DATA, $OUT, the carried
# wheels in .whl/ (the device machine has no network) on PYTHONPATH, and `step`, which runs a command and logs
# a failure without stopping the check.
export PYTHONUNBUFFERED=1
DATA=${DATA:-.gpudata}
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=$PWD:/tmp/site
else
  export PYTHONPATH=$PWD
fi
step() { echo "=== $*"; "$@" || echo "!!! FAILED ($?): $*"; }
