#!/usr/bin/env bash
# Installs the Debian 12 packages ndisshm builds with, only those missing.
# Each one, and why:
#   cmake ninja-build g++       the build (CMake >= 3.25, Ninja, C++20)
#   libgtest-dev libgmock-dev   the test suites (GoogleTest/GoogleMock)
#   libbenchmark-dev            bench/ (Google Benchmark)
#   libcli11-dev                the ndisshm CLI's argument parsing
#   nlohmann-json3-dev          the CLI's --json output
#   libnuma-dev                 NUMA placement of shared memory
#   python3                     bench/run.sh's ratio summary, CLI test's JSON checks
#   libdpdk-dev pkg-config      bench/: DPDK's rte_memzone/rte_malloc, side by side (found with pkg-config)
#   doxygen                     the API reference from the public headers (`docs` target, ctest docs.doxygen)
#   libxdp-dev                  the AF_XDP NIC path (src/os/xdp_socket): UMEM, XSK sockets, the default XDP program
#   libbpf-dev                  libxdp's base: the XDP program's loading and its XSK map
#   iproute2                    tests/afxdp and `demo --nic afxdp`: `ip` makes their namespaces and veth pairs
#   clang libclang-rt-14-dev    scripts/fuzz.sh: the libFuzzer targets (clang only recommends its runtimes)
#   prometheus-cpp-dev          `ndisshm host --metrics-listen`: the metrics and their HTTP server (prometheus-cpp)
#   prometheus                  tests/cli: promtool check metrics, and a real Prometheus server scraping a host
#   help2man                    the man pages, made from each command's --help (dist/)
#   gnuplot-nox                 bench/run.sh --plot (and its test, cli.bench_plot)
#   dpkg-dev                    cpack -G DEB: dpkg-shlibdeps finds the packages' dependencies (ctest packaging.deb)
#   systemd                     systemd-analyze verify of the host's unit file (ctest packaging.deb)
#
#   scripts/deps.sh            install what is missing (root; the one script that installs anything)
#   scripts/deps.sh --check    install nothing: list what is missing and fail if anything is
set -euo pipefail
check_only=0
[[ ${1:-} == --check ]] && check_only=1
packages=(cmake ninja-build g++ libgtest-dev libgmock-dev libbenchmark-dev libcli11-dev nlohmann-json3-dev
          libnuma-dev python3 libdpdk-dev pkg-config doxygen libxdp-dev libbpf-dev iproute2
          clang libclang-rt-14-dev help2man dpkg-dev systemd
          prometheus-cpp-dev prometheus gnuplot-nox)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) && ((check_only)); then
    echo "ndisshm: these Debian packages are missing: ${missing[*]}" >&2
    echo "ndisshm: install them with scripts/deps.sh (as root), then run this again" >&2
    exit 1
fi
if ((${#missing[@]})); then
    echo "ndisshm: installing ${missing[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "ndisshm: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
