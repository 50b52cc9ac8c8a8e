#!/usr/bin/env bash
# Set up everything lensflow needs on a fresh Debian/Ubuntu machine, idempotently:
# system packages (apt-get when root; otherwise prints the exact command), the .venv in the
# repository root, and the package with all extras pinned by constraints.txt.
# Usage: scripts/bootstrap.sh [EXTRAS]   (default: all)
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRAS="${1:-all}"
PYTHON="${PYTHON:-python3}"
SYSTEM_PACKAGES=(
  mosquitto                 # MQTT broker: tests and the demo start their own on a free port
  postgresql                # PostgreSQL server binaries (initdb, pg_ctl) for integration tests
  rabbitmq-server           # the scale-out broker (MQTT plugin + quorum queues); tests start a private node
  redis-server              # shared embedding cache of image search; tests start their own on a free port
  libgl1 libegl1 libxkbcommon0 libglib2.0-0 libfontconfig1 libdbus-1-3  # Qt + OpenCV runtime
)

missing=()
for pkg in "${SYSTEM_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "bootstrap: installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    echo "bootstrap: missing system packages. Run:"
    echo "  sudo apt-get update && sudo apt-get install -y --no-install-recommends ${missing[*]}"
    exit 1
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi

# Reinstall only when the dependency declarations change.
stamp=".venv/.lensflow-installed"
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1) $EXTRAS"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "bootstrap: installing lensflow[$EXTRAS] into .venv (first time takes a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip setuptools wheel
  .venv/bin/python -m pip install -q -c constraints.txt -e ".[$EXTRAS]"
  echo "$want" > "$stamp"
fi

# The Triton Inference Server of the tests and benchmarks (runtime: triton): the tritonserver
# that the nvidia-pytriton wheel bundles, in a venv of its own because that wheel pins numpy<2.
# Its Python backend runs the ONNX files with onnxruntime from this venv. Production runs
# NVIDIA's tritonserver container on the repository `lensflow models triton-repo` writes.
case "$EXTRAS" in
  *all*|*test*)
    triton_stamp=".venv-triton/.lensflow-installed"
    triton_want="$(sha256sum constraints-triton.txt | cut -d' ' -f1)"
    if [ ! -f "$triton_stamp" ] || [ "$(cat "$triton_stamp")" != "$triton_want" ]; then
      echo "bootstrap: installing the Triton server venv .venv-triton (nvidia-pytriton, onnxruntime)"
      [ -x .venv-triton/bin/python ] || "$PYTHON" -m venv .venv-triton
      .venv-triton/bin/python -m pip install -q -c constraints-triton.txt nvidia-pytriton onnxruntime
      echo "$triton_want" > "$triton_stamp"
    fi
    ;;
esac
