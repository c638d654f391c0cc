#!/usr/bin/env bash
# HTTP/2 clients (h2c, prior knowledge) through lbhost, nginx and HAProxy, with h2load: a
# smaller harness than bench/run.sh (no noise guard, no RSS), for the HTTP/2 path. Same setup:
# the LB alone on core 0 with one worker, h2load and the backend nginx on core 1, upstream
# HTTP/1.1 keep-alive to three backends, round-robin, everything on 127.0.0.1.
#
#   bench/h2c.sh                       # 16 clients x 8 streams and 64 x 1, 3 reps, 5 s each
#   REPS=5 SECONDS_PER_RUN=10 bench/h2c.sh
#   LBHOST=target/release/lbhost bench/h2c.sh   # another lbhost build (default target/dist/lbhost)
#   LBHOST_B=/path/to/lbhost bench/h2c.sh       # a second lbhost build ("lbhost-b"), interleaved
#                                      # with the others: before and after a change, in one run
#   UPSTREAM=h2c bench/h2c.sh          # h2c to the backends too: lbhost "protocol": "h2c",
#                                      # nginx grpc_pass, HAProxy "proto h2"
#   INSTRUCTIONS=1 bench/h2c.sh        # user-space instructions per request instead, counted by
#                                      # valgrind's callgrind while h2load sends REQUESTS (default
#                                      # 20,000) at 16 x 8 (LOAD); KEEP=DIR keeps the callgrind.out files
#                                      # (callgrind_annotate); LBS="lbhost" counts only lbhost
#   SYSCALLS=1 bench/h2c.sh            # system calls per request instead (perf stat on the LB's
#                                      # syscall tracepoints, no valgrind), same requests
#   LOAD="64 1" INSTRUCTIONS=1 ...     # counts at another clients x streams load (default 16 8)
#   FORWARDED=1 bench/h2c.sh           # nginx and HAProxy add X-Forwarded-For/-Proto/-Host and
#                                      # Forwarded too, as lbhost always does (the same job)
#
# Prints, per LB and load, the medians of LB CPU µs per request (utime+stime from /proc) and
# req/s; then how one client connection's 3,000 requests spread over the three backends, per LB
# (the backends log each request, so each one's count is what it received). Runs are interleaved (lbhost, nginx, HAProxy, lbhost, ...). Take figures from a quiet
# machine only. Installs nginx-light, haproxy and nghttp2-client when missing (needs root).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
lbhost="${LBHOST:-$root/target/dist/lbhost}"
lbhost_b="${LBHOST_B:-}"
strategy="$root/strategies/round_robin.wasm"
reps="${REPS:-3}"
secs="${SECONDS_PER_RUN:-5}"
upstream="${UPSTREAM:-http1}"
case $upstream in http1 | h2c) ;; *) echo "h2c: UPSTREAM is http1 or h2c" >&2; exit 1 ;; esac
loads=("16 8" "64 1")
instructions="${INSTRUCTIONS:-}"
syscalls="${SYSCALLS:-}"
requests="${REQUESTS:-20000}"
read -r count_c count_m <<<"${LOAD:-16 8}"
lbs=(${LBS:-lbhost nginx haproxy})
keep="${KEEP:-}"
forwarded="${FORWARDED:-}"
port=18480
be=(18481 18482 18483)

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v haproxy >/dev/null || missing+=(haproxy)
command -v h2load >/dev/null || missing+=(nghttp2-client)
[ -z "$instructions" ] || command -v callgrind_control >/dev/null || missing+=(valgrind)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    $sudo env RUNLEVEL=1 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
fi
for f in "$lbhost" "$strategy"; do
    [ -e "$f" ] || { echo "h2c: $f missing (cargo xtask dist, or LBHOST=target/release/lbhost after cargo xtask strategies)" >&2; exit 1; }
done

tmp="$(mktemp -d /tmp/lbh2c.XXXXXX)"
cleanup() {
    pkill -f -- "$tmp" 2>/dev/null || true
    sleep 0.3
    pkill -KILL -f -- "$tmp" 2>/dev/null || true
    rm -rf "$tmp"
}
trap cleanup EXIT

# nginx's temp paths and pid file, in directory $1
nginx_paths() {
    echo "pid $1/nginx.pid; error_log $1/error.log warn;"
}
nginx_temp() {
    echo "access_log off; client_body_temp_path $1/b; proxy_temp_path $1/p; fastcgi_temp_path $1/f; uwsgi_temp_path $1/u; scgi_temp_path $1/s;"
}

# The backends speak HTTP/2 (prior knowledge) with UPSTREAM=h2c, HTTP/1.1 otherwise; with h2c, each
# LB's upstream side is its HTTP/2 client.
be_http2=""
lb_protocol=""
nginx_pass="proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection \"\";"
haproxy_proto=""
nginx_set="proxy_set_header"
if [ "$upstream" = h2c ]; then
    be_http2="http2"
    lb_protocol=', "protocol": "h2c"'
    nginx_pass="grpc_pass grpc://be;"
    haproxy_proto="proto h2"
    nginx_set="grpc_set_header"
fi
# FORWARDED=1: the peers add the forwarding fields lbhost adds (client on 127.0.0.1, plain HTTP).
nginx_forwarded=""
haproxy_forwarded=""
if [ -n "$forwarded" ]; then
    nginx_forwarded="$nginx_set X-Forwarded-For \$proxy_add_x_forwarded_for;
    $nginx_set X-Forwarded-Proto \$scheme; $nginx_set X-Forwarded-Host \$host;
    $nginx_set Forwarded \"for=\$remote_addr;proto=\$scheme;host=\\\"\$host\\\"\";"
    haproxy_forwarded="  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded \"for=%[src];proto=http;host=\\\"%[req.hdr(host)]\\\"\""
fi

mkdir -p "$tmp/be"
cat >"$tmp/be/nginx.conf" <<EOF
worker_processes 1; $(nginx_paths "$tmp/be")
events { worker_connections 4096; }
http { $(nginx_temp "$tmp/be") keepalive_requests 100000000;
  server { listen 127.0.0.1:${be[0]} $be_http2; listen 127.0.0.1:${be[1]} $be_http2;
           listen 127.0.0.1:${be[2]} $be_http2; location / { return 200 "ok"; } } }
EOF
taskset -c 1 nginx -p "$tmp/be" -c "$tmp/be/nginx.conf" -g "daemon off;" 2>/dev/null &

# With INSTRUCTIONS, each LB runs under callgrind with counting off (switched on for the measured
# run only), lbhost with on-demand instances (the pooling allocator reserves more address space
# than valgrind maps) and nginx without its master (callgrind_control cannot reach a forked worker).
wrap=()
single=""
if [ -n "$instructions" ]; then
    single="master_process off;"
fi
start_lb() { # $1 = lbhost|nginx|haproxy, in directory $tmp/$1
    local d="$tmp/$1"
    mkdir -p "$d"
    [ -z "$instructions" ] || wrap=(valgrind --tool=callgrind --instr-atstart=no
        "--log-file=$d/valgrind.%p.log" "--callgrind-out-file=$d/callgrind.out.%p")
    case $1 in
    lbhost | lbhost-b)
        local bin="$lbhost"
        [ "$1" = lbhost ] || bin="$lbhost_b"
        cat >"$d/cfg.json" <<EOF
{"listen": "127.0.0.1:$port", "admin": "127.0.0.1:$((port + 10))", "strategy": "$strategy",
 "workers": 1, "access_log": false,
 "backends": [{"url": "http://127.0.0.1:${be[0]}"$lb_protocol},
              {"url": "http://127.0.0.1:${be[1]}"$lb_protocol},
              {"url": "http://127.0.0.1:${be[2]}"$lb_protocol}]}
EOF
        LBHOST_ON_DEMAND_INSTANCES=${instructions:+1} RUST_LOG=warn taskset -c 0 "${wrap[@]}" "$bin" --config "$d/cfg.json" --workers 1 >"$d/log" 2>&1 &
        ;;
    nginx)
        cat >"$d/nginx.conf" <<EOF
$single worker_processes 1; $(nginx_paths "$d")
events { worker_connections 4096; }
http { $(nginx_temp "$d") keepalive_requests 100000000; http2_max_requests 100000000;
  upstream be { server 127.0.0.1:${be[0]}; server 127.0.0.1:${be[1]}; server 127.0.0.1:${be[2]};
                keepalive 256; keepalive_requests 100000000; }
  server { listen 127.0.0.1:$port http2;
           location / { $nginx_pass $nginx_forwarded } } }
EOF
        taskset -c 0 "${wrap[@]}" nginx -p "$d" -c "$d/nginx.conf" -g "daemon off;" >"$d/log" 2>&1 &
        ;;
    haproxy)
        cat >"$d/haproxy.cfg" <<EOF
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$port proto h2
$haproxy_forwarded
  default_backend be
backend be
  balance roundrobin
  server b1 127.0.0.1:${be[0]} $haproxy_proto
  server b2 127.0.0.1:${be[1]} $haproxy_proto
  server b3 127.0.0.1:${be[2]} $haproxy_proto
EOF
        taskset -c 0 "${wrap[@]}" haproxy -db -f "$d/haproxy.cfg" >"$d/log" 2>&1 &
        ;;
    esac
    main=$!
    for _ in $(seq 1 1800); do
        h2load -n 1 -c 1 "http://127.0.0.1:$port/" 2>/dev/null | grep -q "1 succeeded" && break
        sleep 0.1
    done
    pids="$main $( (pgrep -P "$main" || true) | tr "\n" " ")"
}

cpu_ticks() {
    local sum=0 p
    for p in $pids; do sum=$((sum + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done
    echo "$sum"
}

# The LB's user and system CPU ticks (all its processes and threads): "user system".
cpu_split() {
    local p
    for p in $pids; do cat /proc/"$p"/task/*/stat; done |
        awk '{u += $14; s += $15} END {print u, s}'
}

# System calls per request: perf counts the LB's syscall tracepoints while h2load sends $requests
# requests (after as many to warm up); the CPU split is as noisy as the machine is.
if [ -n "$syscalls" ]; then
    for lb in "${lbs[@]}"; do
        start_lb "$lb"
        taskset -c 1 h2load -c "$count_c" -m "$count_m" -n "$requests" "http://127.0.0.1:$port/" >/dev/null 2>&1
        perf stat -x, -o "$tmp/$lb/perf" -e 'syscalls:sys_enter_*,context-switches' \
            -p "$(echo $pids | tr ' ' ,)" &
        perf=$!
        sleep 0.5
        read -r u0 s0 <<<"$(cpu_split)"
        out=$(taskset -c 1 h2load -c "$count_c" -m "$count_m" -n "$requests" "http://127.0.0.1:$port/" 2>&1)
        read -r u1 s1 <<<"$(cpu_split)"
        kill -INT "$perf"
        wait "$perf" 2>/dev/null || true
        ok=$(echo "$out" | awk '/^requests:/ {print $8}')
        kill $pids 2>/dev/null || true
        wait $pids 2>/dev/null || true
        echo "$lb: $ok requests, per request: $(python3 -c "t = 1e6 / $(getconf CLK_TCK) / max($ok, 1)
print(f'user {($u1 - $u0) * t:.1f} µs, system {($s1 - $s0) * t:.1f} µs')")"
        awk -F, -v n="$ok" '$1 ~ /^[0-9]+$/ && $1 > 0 {
            t += ($3 ~ /sys_enter/) ? $1 : 0
            printf "  %-40s %6.2f\n", $3, $1 / n } END { printf "  %-40s %6.2f\n", "all syscalls", t / n }' \
            "$tmp/$lb/perf" | sort -k2 -n -r
    done
    exit 0
fi
# User-space instructions per request: callgrind counts while h2load sends $requests requests
# (after as many to warm up), then the LB exits and valgrind prints what it counted. A count
# switched on late shows as too few instructions; for lbhost, `callgrind_annotate --tree=caller`
# on a KEEP file shows how many requests were counted (e.g. `Strategies>::select (20,000x)`).
if [ -n "$instructions" ]; then
    for lb in "${lbs[@]}"; do
        start_lb "$lb"
        taskset -c 1 h2load -c "$count_c" -m "$count_m" -n "$requests" "http://127.0.0.1:$port/" >/dev/null 2>&1
        callgrind_control -i on "$main" 2>&1 | grep -q OK ||
            echo "h2c: callgrind did not confirm counting on for $lb" >&2
        out=$(taskset -c 1 h2load -c "$count_c" -m "$count_m" -n "$requests" "http://127.0.0.1:$port/" 2>&1)
        callgrind_control -i off "$main" >/dev/null 2>&1
        ok=$(echo "$out" | awk '/^requests:/ {print $8}')
        kill -TERM "$main" 2>/dev/null || true
        wait "$main" 2>/dev/null || true
        ins=$(cat "$tmp/$lb"/valgrind.*.log | sed -n 's/.*Collected : \([0-9,]*\).*/\1/p' |
            tr -d , | awk '{s += $1} END {print s + 0}')
        printf '%-8s %8s requests  %12s instructions  %8.0f instructions/request\n' \
            "$lb" "$ok" "$ins" "$(python3 -c "print($ins / max($ok, 1))")"
        if [ -n "$keep" ]; then
            mkdir -p "$keep"
            for f in "$tmp/$lb"/callgrind.out.* "$tmp/$lb"/valgrind.*.log; do
                cp "$f" "$keep/$lb.$(basename "$f")"
            done
        fi
    done
    exit 0
fi

results="$tmp/results"
cpu_lbs=(lbhost ${lbhost_b:+lbhost-b} nginx haproxy)
for rep in $(seq 1 "$reps"); do
    for lb in "${cpu_lbs[@]}"; do
        start_lb "$lb"
        for load in "${loads[@]}"; do
            read -r c m <<<"$load"
            taskset -c 1 h2load -c "$c" -m "$m" -D 1 "http://127.0.0.1:$port/" >/dev/null 2>&1
            t0=$(cpu_ticks)
            out=$(taskset -c 1 h2load -c "$c" -m "$m" -D "$secs" "http://127.0.0.1:$port/" 2>&1)
            t1=$(cpu_ticks)
            ok=$(echo "$out" | awk '/^requests:/ {print $8}')
            failed=$(echo "$out" | awk '/^requests:/ {print $10 + $12}')
            rps=$(echo "$out" | awk '/^finished in/ {print $4}')
            hz=$(getconf CLK_TCK)
            us=$(python3 -c "print(($t1 - $t0) * 1e6 / $hz / max($ok, 1))")
            echo "$lb ${c}x$m $us $rps $failed" >>"$results"
            printf 'rep %s %-8s %sx%s: %8.0f req/s  %5.2f µs/req  failed %s\n' \
                "$rep" "$lb" "$c" "$m" "$rps" "$us" "$failed" >&2
        done
        kill $pids 2>/dev/null || true
        wait $pids 2>/dev/null || true
    done
done

# Evenness: one client connection (8 streams, 3,000 requests) through each LB to three backends
# that log each request per port, so what each backend got is counted, not inferred.
kill "$(cat "$tmp/be/nginx.pid")" 2>/dev/null || true
be=(18491 18492 18493)
mkdir -p "$tmp/even"
servers=""
for p in "${be[@]}"; do
    servers+="server { listen 127.0.0.1:$p $be_http2; access_log $tmp/even/$p.log count; location / { return 200 \"ok\"; } } "
done
cat >"$tmp/even/nginx.conf" <<EOF
worker_processes 1; $(nginx_paths "$tmp/even")
events { worker_connections 4096; }
http { $(nginx_temp "$tmp/even") keepalive_requests 100000000;
  log_format count "\$server_port"; $servers }
EOF
taskset -c 1 nginx -p "$tmp/even" -c "$tmp/even/nginx.conf" -g "daemon off;" 2>/dev/null &
sleep 0.5
evenness="$tmp/evenness"
for lb in "${cpu_lbs[@]}"; do
    start_lb "$lb"
    # The readiness probe's request is not counted: the logs start empty here.
    for p in "${be[@]}"; do : >"$tmp/even/$p.log"; done
    taskset -c 1 h2load -c 1 -m 8 -n 3000 "http://127.0.0.1:$port/" >/dev/null 2>&1
    sleep 0.3
    counts=""
    for p in "${be[@]}"; do counts+="$(wc -l <"$tmp/even/$p.log") "; done
    echo "$lb $counts" >>"$evenness"
    kill $pids 2>/dev/null || true
    wait $pids 2>/dev/null || true
done

python3 - "$results" "$upstream" "$evenness" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
print(f"upstream: {sys.argv[2]}")
print("| clients x streams | LB | req/s | LB CPU µs/req | ÷ the better peer | failed |")
print("|---|---|---:|---:|---:|---:|")
for load in dict.fromkeys(r[1] for r in rows):
    cpu = {}
    for lb in ("lbhost", "lbhost-b", "nginx", "haproxy"):
        rs = [r for r in rows if r[0] == lb and r[1] == load]
        if rs:
            cpu[lb] = (statistics.median(float(r[2]) for r in rs),
                       statistics.median(float(r[3]) for r in rs),
                       sum(int(float(r[4])) for r in rs))
    peers = [cpu[p][0] for p in ("nginx", "haproxy") if p in cpu]
    for lb, (us, rps, failed) in cpu.items():
        ratio = f"{us / min(peers):.2f}×" if peers and lb.startswith("lbhost") else ""
        print(f"| {load} | {lb} | {rps:,.0f} | {us:.2f} | {ratio} | {failed} |")
print()
print("One client connection, 8 streams, 3,000 requests: what each backend received")
print()
print("| LB | backend 1 | backend 2 | backend 3 | furthest from a third |")
print("|---|---:|---:|---:|---:|")
for line in open(sys.argv[3]):
    lb, *counts = line.split()
    counts = [int(c) for c in counts]
    third = sum(counts) / 3 or 1
    worst = max(abs(c - third) / third for c in counts)
    print(f"| {lb} | {' | '.join(f'{c:,}' for c in counts)} | {worst:.1%} |")
EOF
