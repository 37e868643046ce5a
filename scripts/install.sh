#!/usr/bin/env bash
# install.sh — create or update the project's virtualenv and install objectjobs into it.
# Idempotent: a stamp (hash of pyproject.toml + extras) skips pip when nothing changed.
#   OBJECTJOBS_VENV    venv path (default: <repo>/.venv)
#   OBJECTJOBS_EXTRAS  optional extras to install, e.g. "test" (default: none)
#   PYTHON             interpreter used to create the venv (default: python3.11, else python3)
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VENV=${OBJECTJOBS_VENV:-$REPO/.venv}
EXTRAS=${OBJECTJOBS_EXTRAS:-}
log() { printf '[install] %s\n' "$*" >&2; }

pick_python() {
  local c
  for c in ${PYTHON:-} python3.11 python3; do
    if command -v "$c" >/dev/null 2>&1 &&
       "$c" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      command -v "$c"; return 0
    fi
  done
  log "ERROR: no Python >= 3.11 found (set PYTHON=...)"; return 1
}

if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  PY=$(pick_python)
  log "creating venv $VENV with $PY"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
fi

SPEC="."
[ -n "$EXTRAS" ] && SPEC=".[$EXTRAS]"
STAMP="$VENV/.objectjobs-install-stamp"
WANT="$(sha256sum "$REPO/pyproject.toml" | cut -d' ' -f1) $SPEC"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] &&
   "$VENV/bin/python" -c 'import objectjobs' 2>/dev/null; then
  log "venv $VENV up to date ($SPEC)"
  exit 0
fi

log "pip install -e '$SPEC' into $VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$VENV/bin/python" -m pip install --quiet --upgrade pip setuptools wheel
(cd "$REPO" && "$VENV/bin/python" -m pip install --quiet -e "$SPEC")
echo "$WANT" >"$STAMP"
log "done"
