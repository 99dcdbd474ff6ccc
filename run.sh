#!/usr/bin/env bash
# One entry point for a fresh machine: creates .venv (torch 2.13.0 first, then the project),
# then runs what was asked.
#   ./run.sh campaign [snakemake args]   the default campaign (config/config.yaml) on this machine
#   ./run.sh test [pytest args]          the test suite
#   ./run.sh install                     only set up .venv
set -euo pipefail
cd "$(dirname "$0")"

VENV=.venv
PY="$VENV/bin/python"
TORCH_VERSION=2.13.0

install() {
  if [ -x "$PY" ] && "$PY" -c "import torch, snakemake, pytest, gnntrack.cli" 2>/dev/null \
      && [ "$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')" = "$TORCH_VERSION" ]; then
    return
  fi
  python3 -m venv "$VENV"
  "$PY" -m pip install --upgrade pip
  "$PY" -m pip install "torch==$TORCH_VERSION"
  "$PY" -m pip install --prefer-binary -e ".[dev,pyg]"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  install) install ;;
  campaign) install; exec "$PY" -m snakemake --profile local "$@" ;;
  test) install; exec "$PY" -m pytest "$@" ;;
  *) echo "usage: $0 {campaign|test|install} [args...]" >&2; exit 2 ;;
esac
