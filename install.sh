#!/usr/bin/env bash
# Install everything the sample DAG and the tests need, in the active Python environment (a venv is best).
#
#   bash install.sh          # PyTorch as pip resolves it (on Linux: the CUDA build, several GB)
#   bash install.sh --cpu    # CPU-only PyTorch from PyTorch's CPU index; it stays CPU-only afterwards
#
# What it does, in order:
#  1. --cpu: installs torch + torchvision from the CPU index ($STCN_TORCH_CPU_INDEX) unless a CPU build is there.
#  2. Pins the torch and torchvision already installed (any build) as pip constraints, so no later step can swap
#     them (torchvision pins an exact torch release: an unconstrained resolve replaces a CPU build with CUDA's).
#  3. The project with its `dev` and `interactive` extras (the latter brings davisinteractive's build
#     prerequisites: NumPy, Cython, setuptools, wheel), every dependency at the version constraints.txt pins
#     (one consistent set: pip's resolver has one candidate each instead of backtracking through botocore
#     releases; `python .ci/constraints.py --write` renews it after a deliberate upgrade).
#  4. davisinteractive 1.0.4, built against those prerequisites (its setup.py imports NumPy and Cython, so it
#     cannot build in pip's isolated environment; its own pins are stale, so its dependencies come from step 3).
#  5. Debian's chromium for the web page's browser tests, when missing and apt-get can run (root); else one line.
# Each failure stops the script with one line naming the step.
set -euo pipefail
cd "$(dirname "$0")"
export PIP_DISABLE_PIP_VERSION_CHECK=1

cpu=0
for arg in "$@"; do
  case "$arg" in
    --cpu) cpu=1 ;;
    -h | --help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (use --cpu or nothing)" >&2; exit 2 ;;
  esac
done

fail() { echo "install.sh: $1" >&2; exit 1; }
pip() { python -m pip "$@"; }
installed() { python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null || true; }
cuda_build() { python -c "import torch; print(torch.version.cuda or '')" 2>/dev/null || true; }

if [ "$cpu" = 1 ]; then
  if [ -z "$(installed torch)" ] || [ -z "$(installed torchvision)" ] || [ -n "$(cuda_build)" ]; then
    index="${STCN_TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
    pip install --force-reinstall torch torchvision --index-url "$index" \
      || fail "could not install CPU torch + torchvision from $index (set STCN_TORCH_CPU_INDEX to a reachable index)"
  fi
fi

constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
for dist in torch torchvision; do
  version="$(installed "$dist")"
  if [ -n "$version" ]; then echo "$dist==$version" >>"$constraints"; fi
done

pip install -c "$constraints" -c constraints.txt -e ".[dev,interactive]" || fail "pip could not install the project (see pip's message above)"
pip install -c "$constraints" -c constraints.txt --no-build-isolation --no-deps davisinteractive==1.0.4 \
  || fail "davisinteractive 1.0.4 did not build (it needs a C compiler and the Python headers)"

if [ "$cpu" = 1 ] && [ -n "$(cuda_build)" ]; then
  fail "asked for a CPU-only install, but the installed torch is a CUDA $(cuda_build) build"
fi

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || fail "apt-get could not install chromium (needed by tests/test_app.py)"
  else
    echo "install.sh: Debian's chromium is missing; the browser tests need it: sudo apt-get install chromium" >&2
  fi
fi
echo "install.sh: done; torch $(installed torch) ($([ -n "$(cuda_build)" ] && echo "CUDA $(cuda_build)" || echo CPU) build)"
