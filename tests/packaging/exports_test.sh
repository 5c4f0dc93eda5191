#!/usr/bin/env bash
# The shared library exports the documented C API and nothing else: every
# function declared in the public C headers, and no other symbol.
set -euo pipefail
lib=$1 include_dir=$2
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TW]$/ {print $3}' | sed "s/@.*//" | sort -u)
declared=$(grep -hoE '^NDISSHM_API [^(]*\b([A-Za-z_][A-Za-z0-9_]*)\(' "$include_dir"/ndis/ndis_shm.h \
               "$include_dir"/ndisshm/host.h "$include_dir"/ndisshm/guest.h \
               "$include_dir"/ndisshm/hub.h "$include_dir"/ndisshm/status.h | sed -E 's/.*\b([A-Za-z_][A-Za-z0-9_]*)\($/\1/' | sort -u)
extra=$(comm -23 <(echo "$exported") <(echo "$declared"))
missing=$(comm -13 <(echo "$exported") <(echo "$declared"))
[[ -z $extra ]] || { echo "exported but not declared in a public header:"; echo "$extra"; exit 1; }
[[ -z $missing ]] || { echo "declared in a public header but not exported:"; echo "$missing"; exit 1; }
echo "exports: $(echo "$exported" | wc -l) symbols, exactly the public C API"
