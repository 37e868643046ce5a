#!/usr/bin/env bash
# test.sh — install everything the tests need, then run ruff (lint and format), mypy and pytest.
# Idempotent: apt is skipped when every package is installed, pip when pyproject is unchanged.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_servers.py -x`.
# Exits non-zero if any step fails, including pytest collecting no test (exit code 5).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
export OBJECTJOBS_VENV=${OBJECTJOBS_VENV:-$REPO/.venv}
VENV=$OBJECTJOBS_VENV
T0=$(date +%s)
log() { printf '[test.sh +%ss] %s\n' "$(($(date +%s) - T0))" "$*" >&2; }

# The servers tests start (tests/servers.py): postgresql, Ceph (start-rgw.sh needs
# uuid-runtime + curl), rabbitmq-server (brings erlang/epmd); rclone and chromium are peers
# of other tests; python3-venv in case the venv is built from Debian's python3.
APT_PACKAGES=(
  postgresql
  ceph-mon ceph-osd radosgw ceph-common uuid-runtime curl
  rabbitmq-server
  rclone
  chromium
  python3-venv
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_apt() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
  if [ ${#missing[@]} -eq 0 ]; then
    log "apt: all ${#APT_PACKAGES[@]} packages already installed, skipping apt"
    return 0
  fi
  log "apt: installing ${missing[*]}"
  local sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { log "ERROR: not root and no sudo; install: ${missing[*]}"; exit 1; }
    sudo=(sudo -n)
  fi
  export DEBIAN_FRONTEND=noninteractive
  # No init system here: package scripts must not try to start services (rabbitmq-server's
  # postinst would). policy-rc.d exiting 101 tells invoke-rc.d "not allowed"; restore after.
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then backup=$(mktemp); "${sudo[@]}" cp -a "$policy" "$backup"; fi
  # shellcheck disable=SC2064
  trap "if [ -n '$backup' ]; then ${sudo[*]} mv -f '$backup' '$policy'; else ${sudo[*]} rm -f '$policy'; fi" EXIT
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod 755 "$policy"
  "${sudo[@]}" apt-get update -q || { sleep 5; "${sudo[@]}" apt-get update -q; }
  "${sudo[@]}" apt-get install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${missing[@]}" \
    </dev/null
  if [ -n "$backup" ]; then "${sudo[@]}" mv -f "$backup" "$policy"; else "${sudo[@]}" rm -f "$policy"; fi
  trap - EXIT
  for p in "${missing[@]}"; do installed "$p" || { log "ERROR: $p did not install"; exit 1; }; done
  log "apt: done"
}

install_apt
OBJECTJOBS_EXTRAS=test bash "$REPO/scripts/install.sh"
log "environment ready"

failed=()
log "ruff check, ruff format --check: src tests bench"
"$VENV/bin/ruff" check src tests bench || failed+=(ruff)
"$VENV/bin/ruff" format --check src tests bench || failed+=("ruff format")
log "mypy"
"$VENV/bin/mypy" || failed+=(mypy)

log "pytest $*"
set +e
"$VENV/bin/pytest" "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  log "ERROR: pytest collected no tests"
  failed+=("pytest(no tests)")
elif [ "$rc" -ne 0 ]; then
  failed+=("pytest(exit $rc)")
fi

if [ ${#failed[@]} -ne 0 ]; then
  log "FAILED: ${failed[*]}"
  exit 1
fi
log "all checks passed"
