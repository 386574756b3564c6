#!/usr/bin/env bash
# make packages: cross-builds enroll-client (CGO off, stripped, version
# stamped) for linux amd64/arm64/armv7 and windows amd64, packages .deb and
# .rpm with nfpm, an .msi with wixl, and signs the Windows exe and msi with
# osslsigncode. Real signing keys come from SIGN_CERT and SIGN_KEY (PEM
# files); without them a throwaway code-signing CA is made for the build.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
dist="$root/dist"
mkdir -p "$dist" "$root/.cache/bin"
cd "$root"
# Only this script's own earlier outputs; never Go's build cache.
rm -rf "$dist"/*.deb "$dist"/*.rpm "$dist"/*.msi "$dist"/throwaway-ca

commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
version=${VERSION:-$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//' || true)}
[ -n "$version" ] || version="0.1.0~git${commit}"
ldflags="-s -w -X github.com/edge-enroll/enroll/pkg/version.Version=$version -X github.com/edge-enroll/enroll/pkg/version.Commit=$commit"

# nfpm, pinned, from the module proxy (packaging/tools).
nfpm="$root/.cache/bin/nfpm"
if [ ! -x "$nfpm" ] || [ "$here/tools/go.sum" -nt "$nfpm" ]; then
  (cd "$here/tools" && go build -o "$nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm)
fi

build() { # goos goarch goarm out
  echo "build $1/$2${3:+v$3}"
  GOOS=$1 GOARCH=$2 GOARM=$3 CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$4" ./cmd/enroll-client
}
build linux amd64 "" "$dist/linux-amd64/enroll-client"
build linux arm64 "" "$dist/linux-arm64/enroll-client"
build linux arm 7 "$dist/linux-armv7/enroll-client"
build windows amd64 "" "$dist/windows-amd64/enroll-client.exe"

# The systemd unit: the template `enroll-client service install` renders,
# filled in for the package's paths.
unit="$dist/enroll-client.service"
sed -e 's#{{Description}}#edge-enroll device enrollment client: keeps this device'"'"'s Vault token alive#' \
    -e 's#{{Path | cmdEscape}}#/usr/bin/enroll-client#g' \
    -e 's#{{range Arguments}} {{. | cmd}}{{end}}# "run" "-config" "/etc/enroll-client/config.yaml"#' \
    -e 's#{{if UserName}}##' -e 's#^{{end}}##' -e 's#{{UserName}}#enroll-client#g' -e 's#{{Name}}#enroll-client#g' \
    "$root/pkg/daemon/unit.service" > "$unit"
if grep -q '{{' "$unit"; then echo "unrendered template left in $unit" >&2; exit 1; fi

# Debian wants a changelog in every non-native package.
when=$(git log -1 --format=%cD 2>/dev/null || date -R)
printf 'enroll-client (%s-1) unstable; urgency=medium\n\n  * Release %s (commit %s).\n\n -- edge-enroll maintainers <maintainers@edge-enroll.invalid>  %s\n' \
  "$version" "$version" "$commit" "$when" | gzip -9n >"$dist/changelog.Debian.gz"

for arch in amd64:amd64 arm64:arm64 armv7:arm7; do
  dir=${arch%%:*}; nfpm_arch=${arch##*:}
  for fmt in deb rpm; do
    cfg="$dist/nfpm-$dir.yaml"
    sed -e "s#\${NFPM_ARCH}#$nfpm_arch#" -e "s#\${VERSION}#$version#" -e "s#\${BIN}#$dist/linux-$dir/enroll-client#" \
        -e "s#\${UNIT}#$unit#" -e "s#\${CHANGELOG}#$dist/changelog.Debian.gz#" "$here/nfpm.yaml" > "$cfg"
    (cd "$here" && "$nfpm" package -f "$cfg" -p "$fmt" -t "$dist/" >/dev/null)
  done
done

# Sign the exe, build the msi around the signed exe, sign the msi.
sign_cert=${SIGN_CERT:-}; sign_key=${SIGN_KEY:-}
if [ -z "$sign_cert" ]; then
  ca="$dist/throwaway-ca"; mkdir -p "$ca"
  openssl req -x509 -newkey rsa:3072 -nodes -days 7 -subj "/CN=edge-enroll throwaway build CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" \
    -keyout "$ca/ca.key" -out "$ca/ca.crt" 2>/dev/null
  openssl req -newkey rsa:3072 -nodes -subj "/CN=edge-enroll build signing" -keyout "$ca/sign.key" -out "$ca/sign.csr" 2>/dev/null
  openssl x509 -req -in "$ca/sign.csr" -CA "$ca/ca.crt" -CAkey "$ca/ca.key" -CAcreateserial -days 7 \
    -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=codeSigning\n') \
    -out "$ca/sign.crt" 2>/dev/null
  sign_cert="$ca/sign.crt"; sign_key="$ca/sign.key"
  echo "signing with a throwaway CA: $ca/ca.crt"
fi
sign() { # in out
  osslsigncode sign -certs "$sign_cert" -key "$sign_key" -n "edge-enroll client" -h sha256 -in "$1" -out "$2" >/dev/null
}
exe="$dist/windows-amd64/enroll-client.exe"
sign "$exe" "$exe.signed" && mv "$exe.signed" "$exe"
msi="$dist/enroll-client-$version-x64.msi"
# wixl resolves sources relative to the .wxs file.
cp "$here/windows/enroll-client.wxs" "$dist/enroll-client.wxs"
(cd "$dist" && wixl -a x64 -D Version="${version%%~*}" -D Exe="windows-amd64/enroll-client.exe" -o "$msi.unsigned" enroll-client.wxs)
sign "$msi.unsigned" "$msi" && rm "$msi.unsigned"

echo
echo "packages in $dist:"
(cd "$dist" && ls -1 *.deb *.rpm *.msi)
size=$(stat -c %s "$dist/linux-amd64/enroll-client")
echo "enroll-client linux/amd64 release binary: $size bytes ($(( size / 1024 / 1024 )) MiB, stripped; target <= 20 MiB)"
