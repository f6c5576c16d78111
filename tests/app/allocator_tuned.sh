#!/bin/sh
# The megaphone binary executes itself once with glibc's per-thread cache raised
# (app/allocator.hpp): the listening process (the same process id) has GLIBC_TUNABLES with the
# cache size and MEGAPHONE_MALLOC=tuned; MEGAPHONE_MALLOC=system and a cache size the operator
# set are left as they are. Usage: allocator_tuned.sh MEGAPHONE_BINARY
set -u
bin=$1
dir=$(mktemp -d)
pid=
cleanup() {
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT

# environ_of VAR...: starts the binary with the given environment, waits for it to listen, prints
# its GLIBC_TUNABLES and MEGAPHONE_MALLOC lines, stops it.
environ_of() {
    env "$@" "$bin" --port 0 --internal-port 0 --threads 1 --log-level warn >"$dir/out" 2>&1 &
    pid=$!
    i=0
    until grep -q "listening on" "$dir/out"; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$pid" 2>/dev/null; then
            echo "FAIL: the server did not listen:" >&2
            cat "$dir/out" >&2
            exit 1
        fi
        sleep 0.1
    done
    tr '\0' '\n' <"/proc/$pid/environ" | grep -E '^(GLIBC_TUNABLES|MEGAPHONE_MALLOC)=' | sort
    kill "$pid"
    wait "$pid" 2>/dev/null
    pid=
}

expect() {
    if [ "$1" != "$2" ]; then
        printf 'FAIL: %s\n  expected: %s\n  got:      %s\n' "$3" "$2" "$1" >&2
        exit 1
    fi
}

nl='
'
got=$(environ_of -u GLIBC_TUNABLES -u MEGAPHONE_MALLOC)
expect "$got" "GLIBC_TUNABLES=glibc.malloc.tcache_count=128${nl}MEGAPHONE_MALLOC=tuned" \
    "the default start executes itself once, tuned"
got=$(environ_of -u GLIBC_TUNABLES MEGAPHONE_MALLOC=system)
expect "$got" "MEGAPHONE_MALLOC=system" "MEGAPHONE_MALLOC=system is the opt-out"
got=$(environ_of -u MEGAPHONE_MALLOC GLIBC_TUNABLES=glibc.malloc.tcache_count=9)
expect "$got" "GLIBC_TUNABLES=glibc.malloc.tcache_count=9" "the operator's cache size is kept"
echo "allocator tuning: 3 passed, 0 failed"
