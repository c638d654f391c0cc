#!/usr/bin/env bash
# Side-by-side benchmark: lbhost vs nginx vs HAProxy. See BENCHMARKS.md and `bench/run.sh --help`.
#
#   bench/run.sh                          # 64 and 256 connections, 3 reps, 10 s each (~4-5 min)
#   bench/run.sh --duration 3s --reps 1   # smoke check
#   bench/run.sh --scale                  # lbhost alone with 3, 64, 1000 backends
#   bench/run.sh --idle-conns 10000       # RSS of 10,000 idle keep-alive connections
#   bench/run.sh --instructions           # user-space instructions per request (callgrind)
#   bench/run.sh --pgo                    # lbhost as `cargo xtask dist` builds it (PGO)
#   bench/run.sh --no-build ...           # skip cargo build / cargo xtask strategies
#
# Every other flag goes to bench/lbbench.py. Needs root (or sudo) only to apt-get install
# nginx-light, haproxy and wrk when they are missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"

build=1
pgo=0
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        --pgo) pgo=1; args+=("$a") ;;
        -h|--help) exec python3 "$here/lbbench.py" --help ;;
        *) args+=("$a") ;;
    esac
done

# --- tools ----------------------------------------------------------------------------------
missing=()
command -v nginx   >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v wrk     >/dev/null || missing+=(wrk)
case " $* " in
    *" --instructions "*) command -v valgrind >/dev/null || missing+=(valgrind) ;;
esac
for t in taskset:util-linux python3:python3 openssl:openssl; do
    command -v "${t%%:*}" >/dev/null || missing+=("${t##*:}")
done
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    echo "bench: installing ${missing[*]}" >&2
    $sudo apt-get update -qq
    # RUNLEVEL=1: do not start the distribution's nginx/haproxy services on :80
    $sudo env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi

# --- build ----------------------------------------------------------------------------------
if ((build)); then
    if ((pgo)); then
        echo "bench: building lbhost with PGO (cargo xtask dist) and the strategies" >&2
        rustup component add llvm-tools >&2
        (cd "$root" && cargo xtask dist) >&2
    else
        echo "bench: building lbhost (release) and the strategies" >&2
        (cd "$root" && cargo build --release -p lbhost && cargo xtask strategies) >&2
    fi
fi

# --- limits, temp dir, cleanup --------------------------------------------------------------
if ! ulimit -n 65536 2>/dev/null; then
    ulimit -n "$(ulimit -Hn)"
    echo "bench: could not raise ulimit -n to 65536; using the hard limit $(ulimit -n)" >&2
fi

BENCH_TMP="$(mktemp -d /tmp/lbbench.XXXXXX)"
export BENCH_TMP
cleanup() {
    # lbbench.py stops what it started; this catches anything left after a crash or a kill.
    # Each process was started as its own process group, recorded in $BENCH_TMP/pgids.
    if [ -f "$BENCH_TMP/pgids" ]; then
        while read -r pg; do
            [ -n "$pg" ] && kill -KILL -- "-$pg" 2>/dev/null || true
        done <"$BENCH_TMP/pgids"
    fi
    if [ -n "${BENCH_KEEP_TMP:-}" ]; then
        echo "bench: kept $BENCH_TMP" >&2
    else
        rm -rf "$BENCH_TMP"
    fi
}
trap cleanup EXIT

# In the background so that a signal to this script is handled at once: it is passed on to
# lbbench.py (SIGTERM: it stops its processes and exits), then the EXIT trap sweeps up.
python3 "$here/lbbench.py" "${args[@]+"${args[@]}"}" &
py=$!
stop() {
    trap - INT TERM
    kill -TERM "$py" 2>/dev/null || true
    wait "$py" 2>/dev/null || true
    exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
status=0
wait "$py" || status=$?
exit "$status"
