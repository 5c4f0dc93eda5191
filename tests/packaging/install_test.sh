#!/usr/bin/env bash
# Installs the build into a scratch prefix and builds a tiny consumer against
# the installed tree both ways: CMake's find_package and pkg-config. Each
# consumer runs one NDIS allocation and must exit 0.
set -euo pipefail
build=$1 source=$2
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" >/dev/null
cmake -S "$source/tests/packaging/consumer" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" >/dev/null
ninja -C "$work/cmake" >/dev/null
LD_LIBRARY_PATH="$work/prefix/lib" "$work/cmake/consumer"
export PKG_CONFIG_PATH="$work/prefix/lib/pkgconfig"
# shellcheck disable=SC2046
cc -std=c11 -Wall -Wextra -Werror "$source/tests/packaging/consumer/consumer.c" -o "$work/pc-consumer" \
    $(pkg-config --cflags --libs ndisshm)
LD_LIBRARY_PATH="$work/prefix/lib" "$work/pc-consumer"
echo "install: find_package and pkg-config consumers built and ran"
