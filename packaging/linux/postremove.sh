#!/bin/sh
set -e
if [ -z "${DPKG_ROOT:-}" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload || true
fi
# The device's state (its identity) is kept on removal; purge drops it.
if [ "${1:-}" = "purge" ]; then
  rm -rf "${DPKG_ROOT:-}/var/lib/enroll-client"
fi
exit 0
