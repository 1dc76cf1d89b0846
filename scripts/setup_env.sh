#!/usr/bin/env bash
# Creates .venv/ at the repository root with the whole pinned stack:
#   python deps (pyproject.toml), horovod (compiled
#   against the installed torch, cached), Delta jars in pyspark's jars/ and a spark-defaults.conf
#   so that plain `spark-submit` knows Delta. Idempotent: a finished setup leaves a stamp.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
VENV=$ROOT/.venv
PY=${PYTHON:-python3}
STAMP=$VENV/.bigearth_setup_done
HASH=$(cat pyproject.toml scripts/setup_env.sh scripts/build_horovod.sh scripts/configure_spark.sh | sha256sum | cut -c1-16)

if [[ -f $STAMP && $(cat "$STAMP") == "$HASH" ]]; then
  exit 0
fi
echo "== setting up $VENV (stack hash $HASH)"
# torch's CUDA wheels alone are ~3 GB: no pip cache beside the install, and say what disk there is
export PIP_NO_CACHE_DIR=1
FREE_GB=$(df -Pk "$ROOT" | awk 'NR==2 {printf "%d", $4 / 1048576}')
if ((FREE_GB < 10)); then
  echo "warning: $FREE_GB GB free on $ROOT; the stack needs about 9 GB (torch with its CUDA wheels ~6.5 GB)" >&2
fi
[[ -x $VENV/bin/python ]] || "$PY" -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade "pip>=24" "setuptools>=70" wheel
# In three steps, each pinned as in pyproject.toml: pip keeps every download of one call in its
# temporary folder until that call ends, and pyspark's sdist is built into a wheel (~2 GB of
# copies of its 430 MB): one call for everything peaked ~2 GB above the finished install.
# A failed step is tried once more (a dropped download), after saying how much disk is left.
pinned() { sed -n "s/^ *\"\($1==[^\"]*\)\".*/\1/p" pyproject.toml; }
pip_step() {
  echo "== $1"
  shift
  "${PIP[@]}" install --progress-bar off -q "$@" && return 0
  df -h "$ROOT" "${TMPDIR:-/tmp}" >&2
  echo "== retrying once" >&2
  "${PIP[@]}" install --progress-bar off -q "$@"
}
pip_step "pyspark, delta-spark" "$(pinned pyspark)" "$(pinned delta-spark)"
pip_step "torch, torchvision" "$(pinned torch)" "$(pinned torchvision)"
pip_step "the rest of pyproject.toml (rasterio, pyarrow, ...) and the package" -e ".[dev]"
# petastorm 0.13.1 declares setuptools<70, which it does not need (torch >= 2.9 wants >= 77):
# installed without its declared dependencies; the ones it uses are in pyproject.toml
echo "== petastorm 0.13.1"
"${PIP[@]}" install --progress-bar off -q --no-deps "petastorm==0.13.1"
echo "== horovod 0.28.1 (gloo, torch)"
bash scripts/build_horovod.sh "$VENV"
echo "== Delta jars and spark-defaults.conf"
bash scripts/configure_spark.sh "$VENV"
"$VENV/bin/python" - <<'PY'
import horovod.torch as hvd, pyspark, delta, rasterio, torch, pyarrow, petastorm
print(f"stack ok: pyspark {pyspark.__version__}, pyarrow {pyarrow.__version__}, torch {torch.__version__}, "
      f"rasterio {rasterio.__version__}, gloo {hvd.gloo_built()}")
PY
echo "$HASH" > "$STAMP"
