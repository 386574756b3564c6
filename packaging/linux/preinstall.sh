#!/bin/sh
# Create the service's user and group before files owned by them unpack.
# DPKG_ROOT is set when dpkg installs into another root.
set -e
root="${DPKG_ROOT:-}"
if ! getent -s files group enroll-client >/dev/null 2>&1 && ! grep -q '^enroll-client:' "$root/etc/group" 2>/dev/null; then
  groupadd --system ${root:+--root "$root"} enroll-client
fi
if ! getent -s files passwd enroll-client >/dev/null 2>&1 && ! grep -q '^enroll-client:' "$root/etc/passwd" 2>/dev/null; then
  useradd --system ${root:+--root "$root"} --gid enroll-client --home-dir /var/lib/enroll-client \
    --no-create-home --shell /usr/sbin/nologin --comment "edge-enroll client" enroll-client
fi
# The TPM resource manager is usable by the tss group, where there is one.
if grep -q '^tss:' "$root/etc/group" 2>/dev/null; then
  usermod ${root:+--root "$root"} -a -G tss enroll-client
fi
exit 0
