# Sourced by scripts/demo, scripts/test and scripts/bench: create or reuse .venv and install the project into it.
# Usage: . scripts/_venv.sh EXTRAS   (e.g. "test" or "zoo")
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${1:-zoo}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=".venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "installing blackbox-xai[$extras] into .venv (log: .venv/install.log)" >&2
  if ! { .venv/bin/python -m pip install --disable-pip-version-check --upgrade pip \
         && .venv/bin/python -m pip install --disable-pip-version-check -e ".[$extras]"; } >.venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2
    echo "installation failed: see .venv/install.log" >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
