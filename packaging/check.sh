#!/usr/bin/env bash
# make test-packages: checks what `make packages` built, with the platforms'
# own tools. Installs go into scratch roots and private mount namespaces;
# the host is never changed.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dist="$(cd "$here/.." && pwd)/dist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0; failed=0
ok()   { passed=$((passed + 1)); echo "ok   $*"; }
bad()  { failed=$((failed + 1)); echo "FAIL $*"; }
check() { local what=$1; shift; if out=$("$@" 2>&1); then ok "$what"; else bad "$what"; echo "$out" | sed 's/^/     /' | tail -15; fi; }
has()  { grep -q -- "$2" <<<"$1"; }

deb=$(ls "$dist"/enroll-client_*_amd64.deb); rpm=$(ls "$dist"/enroll-client-*.x86_64.rpm); msi=$(ls "$dist"/*.msi)
exe="$dist/windows-amd64/enroll-client.exe"; ca="$dist/throwaway-ca/ca.crt"

# --- .deb ---------------------------------------------------------------
info=$(dpkg-deb -I "$deb"); contents=$(dpkg-deb -c "$deb")
check "deb: control names the package and architecture" has "$info" "Package: enroll-client"
check "deb: binary, unit, config, state dir" bash -c '
  for p in ./usr/bin/enroll-client ./lib/systemd/system/enroll-client.service ./etc/enroll-client/config.yaml ./var/lib/enroll-client/; do
    grep -q -- " $p\$" <<<"$1" || { echo "missing $p"; exit 1; }; done' _ "$contents"
check "deb: state dir is enroll-client's, mode 0700" has "$contents" "drwx------ enroll-client/enroll-client .* ./var/lib/enroll-client/"
check "deb: config is a conffile" bash -c 'dpkg-deb --ctrl-tarfile "$1" | tar -xO ./conffiles | grep -qx /etc/enroll-client/config.yaml' _ "$deb"
check "deb: maintainer scripts" bash -c 'for s in preinst postinst prerm postrm; do dpkg-deb --ctrl-tarfile "$1" | tar -t | grep -q "^./$s$" || exit 1; done' _ "$deb"
check "deb: lintian reports no errors" bash -c 'out=$(lintian --tag-display-limit 0 "$1" 2>&1); echo "$out"; ! grep -q "^E:" <<<"$out"' _ "$deb"

# Install and remove into a scratch root; the maintainer scripts run
# without chroot and honour DPKG_ROOT.
R="$work/deb-root"
mkdir -p "$R/var/lib/dpkg/info" "$R/var/lib/dpkg/updates" "$R/etc"
touch "$R/var/lib/dpkg/status"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$R/etc/passwd"; printf 'root:x:0:\n' >"$R/etc/group"
printf 'root:*:19000:0:99999:7:::\n' >"$R/etc/shadow"; printf 'root:*::\n' >"$R/etc/gshadow"
dpkgr() { dpkg --root="$R" --force-script-chrootless --log=/dev/null "$@"; }
check "deb: installs into a scratch root" dpkgr -i "$deb"
check "deb: preinst created the service user" grep -q '^enroll-client:x:[0-9]*:[0-9]*:.*/usr/sbin/nologin$' "$R/etc/passwd"
check "deb: files in place" test -x "$R/usr/bin/enroll-client" -a -f "$R/etc/enroll-client/config.yaml" -a -d "$R/var/lib/enroll-client"
echo "# operator's edit" >>"$R/etc/enroll-client/config.yaml"
check "deb: reinstall keeps the edited conffile" bash -c 'dpkg --root="$1" --force-script-chrootless --log=/dev/null --force-confold -i "$2" && grep -q "operator.s edit" "$1/etc/enroll-client/config.yaml"' _ "$R" "$deb"
check "deb: removes" dpkgr -r enroll-client
check "deb: remove keeps config, drops the binary" test ! -e "$R/usr/bin/enroll-client" -a -f "$R/etc/enroll-client/config.yaml"
check "deb: purges" dpkgr -P enroll-client
check "deb: purge drops config and state" test ! -e "$R/etc/enroll-client/config.yaml" -a ! -e "$R/var/lib/enroll-client"

# The packaged unit passes systemd-analyze verify, seen where it will run:
# /usr/bin from an overlay holding the packaged binary, the service user in
# copies of passwd and group, all in a private mount namespace.
check "deb: packaged unit passes systemd-analyze verify" unshare --mount --propagation private bash -euc '
  W=$1; D=$2
  mkdir -p "$W/x" "$W/up" "$W/wk"; dpkg-deb -x "$D" "$W/x"
  mount -t overlay overlay -o "lowerdir=/usr/bin,upperdir=$W/up,workdir=$W/wk" /usr/bin
  cp "$W/x/usr/bin/enroll-client" /usr/bin/enroll-client
  cp /etc/passwd "$W/passwd"; cp /etc/group "$W/group"
  echo "enroll-client:x:990:990::/nonexistent:/usr/sbin/nologin" >>"$W/passwd"; echo "enroll-client:x:990:" >>"$W/group"
  mount --bind "$W/passwd" /etc/passwd; mount --bind "$W/group" /etc/group
  systemd-analyze verify "$W/x/lib/systemd/system/enroll-client.service"' _ "$work/verify" "$deb"

# --- .rpm ---------------------------------------------------------------
rinfo=$(rpm -qip "$rpm" 2>/dev/null); rlist=$(rpm -qlp "$rpm" 2>/dev/null); rscripts=$(rpm -qp --scripts "$rpm" 2>/dev/null)
check "rpm: header" has "$rinfo" "Name        : enroll-client"
check "rpm: files" bash -c 'for p in /usr/bin/enroll-client /usr/lib/systemd/system/enroll-client.service /etc/enroll-client/config.yaml /var/lib/enroll-client; do grep -qx "$p" <<<"$1" || { echo "missing $p"; exit 1; }; done' _ "$rlist"
check "rpm: config is %config(noreplace)" bash -c 'rpm -qp --configfiles "$1" 2>/dev/null | grep -qx /etc/enroll-client/config.yaml && rpm -qp --qf "[%{FILEFLAGS:fflags} %{FILENAMES}\n]" "$1" 2>/dev/null | grep -q "^cn /etc/enroll-client/config.yaml"' _ "$rpm"
check "rpm: scriptlets" bash -c 'for s in preinstall postinstall preuninstall postuninstall; do grep -q "^$s scriptlet" <<<"$1" || { echo "no $s"; exit 1; }; done' _ "$rscripts"
# rpm runs scriptlets chrooted into --root, which holds no shell here: the
# scratch root gets the user the %pre scriptlet would create, and the files.
RR="$work/rpm-root"; mkdir -p "$RR/etc"
printf 'root:x:0:0::/root:/bin/sh\nenroll-client:x:990:990::/var/lib/enroll-client:/usr/sbin/nologin\n' >"$RR/etc/passwd"
printf 'root:x:0:\nenroll-client:x:990:\n' >"$RR/etc/group"
check "rpm: installs into a scratch root" rpm --root "$RR" --initdb
check "rpm: installs into a scratch root" rpm --root "$RR" -i --noscripts --nodeps "$rpm"
check "rpm: rpm -V is clean" bash -c 'out=$(rpm --root "$1" -V enroll-client 2>&1); echo "$out"; [ -z "$out" ]' _ "$RR"
check "rpm: removes" rpm --root "$RR" -e --noscripts enroll-client
check "rpm: removed" test ! -e "$RR/usr/bin/enroll-client"

# --- .msi and signatures ---------------------------------------------------
svc=$(msiinfo export "$msi" ServiceInstall | tr -d '\r'); ctl=$(msiinfo export "$msi" ServiceControl | tr -d '\r')
check "msi: ServiceInstall runs as LocalSystem, automatic start" bash -c 'grep -P "^ClientServiceInstall\tenroll-client\t[^\t]*\t16\t2\t1\t\t\tLocalSystem\t" <<<"$1"' _ "$svc"
check "msi: ServiceControl starts on install, stops on both, removes on uninstall" bash -c 'grep -P "^ClientServiceControl\tenroll-client\t163\t" <<<"$1"' _ "$ctl"
check "exe: signature verifies" osslsigncode verify -CAfile "$ca" -in "$exe"
check "msi: signature verifies" osslsigncode verify -CAfile "$ca" -in "$msi"
for f in "$exe" "$msi"; do
  cp "$f" "$work/tampered"
  size=$(stat -c %s "$work/tampered")
  printf '\x42' | dd of="$work/tampered" bs=1 seek=$((size / 2)) conv=notrunc status=none
  check "$(basename "$f"): one changed byte breaks the signature" bash -c '! osslsigncode verify -CAfile "$1" -in "$2" >/dev/null 2>&1' _ "$ca" "$work/tampered"
done

# --- other architectures, under qemu-user ------------------------------------
printf '{"version":1,"fleet":"acme","server_url":"https://127.0.0.1:9","vault_addr":"https://127.0.0.1:9","enroll_mount":"edge-enroll","device_mount":"edge-devices-acme","role_id":"r","secret_id":"s","generation":1}' >"$work/bundle.json"
chmod 600 "$work/bundle.json"
for t in arm64:qemu-aarch64 armv7:qemu-arm amd64:; do
  arch=${t%%:*}; emu=${t##*:}
  bin="$dist/linux-$arch/enroll-client"
  check "linux/$arch: prints its version" bash -c '$1 "$2" version | grep -q "enroll-client .*(commit .*linux/"' _ "$emu" "$bin"
  printf 'device_id: qemu-%s\nbundle_path: %s\nstate_path: %s\npreprovisioned_path: %s\n' "$arch" "$work/bundle.json" "$work/$arch/state.db" "$work/pre.json" >"$work/$arch.yaml"
  # check-config reads the configuration and the bundle and creates no
  # state (it may run while the daemon holds it).
  check "linux/$arch: checks its configuration and creates no state" bash -c '$1 "$2" check-config -config "$3" && test ! -e "$4"' _ "$emu" "$bin" "$work/$arch.yaml" "$work/$arch/state.db"
done
size=$(stat -c %s "$dist/linux-amd64/enroll-client")
check "linux/amd64 client is at most 20 MiB stripped ($size bytes)" test "$size" -le $((20 * 1024 * 1024))

echo "packages: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
