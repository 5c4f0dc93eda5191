#!/usr/bin/env bash
# The Debian packages (cpack -G DEB, dist/): three of them, with the fields
# and files each must have; unpacked into an empty root, they are enough to
# build and run a consumer (find_package and pkg-config) and the CLI; the
# host's unit file passes systemd-analyze verify.
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$build" && cpack -G DEB -B "$work/out" >/dev/null)
shopt -s nullglob
debs=("$work"/out/*.deb)
((${#debs[@]} == 3)) || { echo "expected 3 packages, got: ${debs[*]##*/}"; exit 1; }
fail() { echo "deb: $*"; exit 1; }
field() { dpkg-deb -f "$work/out/$1"_*.deb "$2"; }
contents() { dpkg-deb -c "$work/out/$1"_*.deb | awk '{print $6}'; }

[[ $(field libndisshm2 Depends) == *libnuma1* ]] || fail "libndisshm2 does not depend on libnuma1"
[[ $(field libndisshm-dev Depends) == *"libndisshm2 (="* ]] || fail "libndisshm-dev does not pin libndisshm2"
[[ $(field ndisshm Depends) == *libxdp1* || $(field ndisshm Depends) != "" ]] || fail "ndisshm has no Depends"
dpkg-deb -I "$work"/out/libndisshm2_*.deb triggers | grep -q 'activate-noawait ldconfig' ||
    fail "libndisshm2 does not trigger ldconfig"
expect() {  # package, path (a pattern) it must hold
    contents "$1" | grep -qE "$2" || fail "$1 lacks $2"
}
expect libndisshm2 '^\./usr/lib/libndisshm\.so\.2(\.|$)'
contents libndisshm2 | grep -qE '/include/|\.a$' && fail "libndisshm2 holds development files"
expect libndisshm-dev '^\./usr/include/ndis/ndis_shm\.h$'
expect libndisshm-dev '^\./usr/include/ndisshm/host\.h$'
expect libndisshm-dev '^\./usr/lib/libndisshm\.a$'
expect libndisshm-dev '^\./usr/lib/libndisshm\.so$'
expect libndisshm-dev '^\./usr/lib/pkgconfig/ndisshm\.pc$'
expect libndisshm-dev '^\./usr/lib/cmake/ndisshm/ndisshmConfig\.cmake$'
expect libndisshm-dev '^\./usr/share/doc/ndisshm/getting-started\.md$'
expect ndisshm '^\./usr/bin/ndisshm$'
expect ndisshm '^\./usr/lib/systemd/system/ndisshm-host\.service$'
expect ndisshm '^\./usr/share/bash-completion/completions/ndisshm$'
for page in ndisshm ndisshm-demo ndisshm-guest ndisshm-host ndisshm-stat ndisshm-soak; do
    expect ndisshm "^\./usr/share/man/man1/$page\.1(\.gz)?$"
done

# An empty root with the three unpacked: a consumer builds against it alone.
root=$work/root
for d in "${debs[@]}"; do dpkg-deb -x "$d" "$root"; done
cmake -S "$source/tests/packaging/consumer" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$root/usr" >/dev/null
ninja -C "$work/cmake" >/dev/null
LD_LIBRARY_PATH="$root/usr/lib" "$work/cmake/consumer"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$source/tests/packaging/consumer/consumer.c" -o "$work/pc-consumer" \
    $(PKG_CONFIG_PATH="$root/usr/lib/pkgconfig" pkg-config --cflags --libs ndisshm)
LD_LIBRARY_PATH="$root/usr/lib" "$work/pc-consumer"
"$root/usr/bin/ndisshm" --version | grep -q '^ndisshm ' || fail "the packaged CLI does not run"

# The unit as packaged, checked with this machine's systemd: its ExecStart
# (/usr/bin/ndisshm) pointed at the unpacked binary, its man page found there.
if command -v systemd-analyze >/dev/null; then
    unit=$root/usr/lib/systemd/system/ndisshm-host.service
    grep -q '^ExecStart=/usr/bin/ndisshm host ' "$unit" || fail "the unit does not start /usr/bin/ndisshm host"
    mkdir -p "$work/units"
    sed "s|^ExecStart=/usr/bin/ndisshm|ExecStart=$root/usr/bin/ndisshm|" "$unit" >"$work/units/ndisshm-host.service"
    MANPATH=$root/usr/share/man systemd-analyze verify "$work/units/ndisshm-host.service" ||
        fail "systemd-analyze verify refused ndisshm-host.service"
else
    fail "systemd-analyze is missing (scripts/deps.sh installs systemd)"
fi
echo "deb: 3 packages, fields and files right; a consumer and the CLI ran from the unpacked root; the unit verifies"
