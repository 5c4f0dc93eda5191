# Sourced by each tests/cli script (`source "$(dirname "$0")/lib.sh"`): the
# few lines every one of them needs, once. A script counts its failures with
# `fail`, polls with `wait_for`, and ends with its own verdict.

failures=0

# fail WHAT...: one failed check, said on stderr; the script goes on.
fail() {
    echo "FAIL: $*" >&2
    failures=$((failures + 1))
}

# wait_for SECONDS COMMAND...: runs COMMAND every 50 ms until it succeeds
# (status 0) or SECONDS have passed (status 1).
wait_for() {
    local tries=$(($1 * 20))
    shift
    for _ in $(seq "$tries"); do
        "$@" && return 0
        sleep 0.05
    done
    return 1
}
