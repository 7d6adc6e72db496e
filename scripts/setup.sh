#!/usr/bin/env bash
# Developer / CI set-up (not needed to run leakscope: the run-time install is `npm install -g`, node only).
# One-time, idempotent, on Debian 12 as root: test dependencies (system packages), npm packages, build, fixtures.
# Safe to run again: installs only what is missing, rebuilds incrementally. Never stops, disables,
# restarts or reconfigures a host service: if installing nginx starts Debian's nginx, it keeps running
# (the tests start their own nginx with their own prefixes on free loopback ports).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(gcc g++ make libc6-dbg binutils gdb nginx nginx-dev libpcre2-dev zlib1g-dev libssl-dev bpftrace wrk chromium strace time libnginx-mod-http-lua libluajit2-5.1-dev valgrind bzip2 prometheus golang-go)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
npm run -s build
make -s -C test/fixtures
