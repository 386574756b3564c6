#!/bin/sh
set -e
# Stop on removal, not on upgrade (deb: "upgrade"; rpm: $1 >= 1).
case "${1:-}" in upgrade|1|2) exit 0 ;; esac
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl disable --now enroll-client.service || true
fi
exit 0
