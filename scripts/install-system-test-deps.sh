#!/usr/bin/env bash
# System packages some tests drive for real: Debian's chromium (browser test) and postgresql (registry on
# PostgreSQL). Installs only what is missing; where apt is unavailable it says so and those tests skip.
set -u
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
  echo "note: cannot install ${need[*]} (no apt-get or not root); the tests that need them will skip" >&2
  exit 0
fi
echo "installing system packages for tests: ${need[*]}"
apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
  || echo "note: apt-get install ${need[*]} failed; the tests that need them will skip" >&2
# Debian starts a default cluster on install; the tests start their own throwaway servers
command -v pg_ctlcluster >/dev/null 2>&1 && pg_lsclusters -h 2>/dev/null | awk '{print $1, $2}' | \
  while read -r v c; do pg_ctlcluster "$v" "$c" stop >/dev/null 2>&1 || true; done
exit 0
