#!/usr/bin/env bash
# Builds horovod 0.28.1 against the venv's torch and installs it. horovod 0.28.1 compiles with
# -std=c++14 which torch >= 2.1 headers reject, so CXX points to a wrapper that rewrites the
# standard to C++17. The wheel is cached per (horovod, torch, python) so rebuilds are rare.
set -euo pipefail
VENV=${1:?usage: build_horovod.sh VENV}
PYV=$("$VENV/bin/python" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')
TORCHV=$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')
CACHE=${BIGEARTH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/bigearth_spark}/horovod-0.28.1-torch$TORCHV-$PYV
if "$VENV/bin/python" -c 'import horovod.torch' 2>/dev/null; then
  echo "horovod already installed"; exit 0
fi
if ! ls "$CACHE"/horovod-*.whl >/dev/null 2>&1; then
  CMAKE=$(command -v cmake || true)
  if [[ -z $CMAKE ]] || [[ $("$CMAKE" --version | head -1 | awk '{print $3}' | cut -d. -f1) -ge 4 ]]; then
    echo "horovod 0.28.1 needs CMake 3.x on PATH (e.g. apt-get install cmake); found: ${CMAKE:-none}" >&2
    exit 1
  fi
  WORK=$(mktemp -d)
  trap 'rm -rf "$WORK"' EXIT
  cat > "$WORK/cxx17" <<'WRAP'
#!/usr/bin/env bash
args=()
for a in "$@"; do
  case $a in -std=c++11|-std=c++14) args+=(-std=c++17) ;; *) args+=("$a") ;; esac
done
exec g++ "${args[@]}"
WRAP
  chmod +x "$WORK/cxx17"
  echo "building horovod wheel (takes several minutes; cached in $CACHE)"
  PATH=$(dirname "$CMAKE"):$VENV/bin:$PATH CXX=$WORK/cxx17 CC=gcc \
  HOROVOD_WITH_PYTORCH=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
  HOROVOD_WITHOUT_TENSORFLOW=1 HOROVOD_WITHOUT_MXNET=1 HOROVOD_CPU_OPERATIONS=gloo \
  MAKEFLAGS=-j"$(nproc)" \
    "$VENV/bin/python" -m pip wheel --no-deps --no-build-isolation --no-cache-dir \
      -w "$WORK/out" horovod==0.28.1
  mkdir -p "$CACHE"
  cp "$WORK"/out/horovod-*.whl "$CACHE"/
fi
"$VENV/bin/python" -m pip install -q --no-deps "$CACHE"/horovod-*.whl
