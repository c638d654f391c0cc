"""User-space instructions per request, counted by callgrind (`bench/run.sh --instructions`).

CPU time on a shared 2-core VM moves ±20 % between runs, so a change worth 2 % of a request
cannot be seen in it. Callgrind counts the instructions a process executes in user space,
which hardly moves between runs (±0.5 %): this mode starts each LB under
`valgrind --tool=callgrind` with counting off, warms it up, counts only while wrk sends a
measured run, and divides by the requests wrk completed. Kernel work (most of a request) is
not counted, and an instruction is not a fixed time, so this complements `LB CPU µs/req`; it
does not replace it.

lbhost runs with `LBHOST_ON_DEMAND_INSTANCES=1` here: the pooling allocator's address-space
reservation is more than valgrind can map, and nginx with `master_process off` (its one
worker's event loop, without the master: callgrind_control cannot reach a forked worker).
Everything else is the setup of the side-by-side runs (same configs, one worker, the LB alone
on its core).
"""

import os
import re
import shutil
import statistics
import subprocess
import time


def callgrind_control(*argv):
    """Sends a command to every process running under callgrind (only the LB here)."""
    subprocess.run(["callgrind_control", *argv], stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, timeout=30, check=False)


def start_under_callgrind(lb, out_dir, wait_http_ok, child_pids):
    """Starts `lb` with valgrind in front of its command line; counting starts switched off."""
    lb.single_process = True  # nginx: `master_process off`, so callgrind_control reaches it
    # Its own log file per process: nginx points its workers' stderr at its error log.
    argv = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
            f"--log-file={out_dir}/valgrind.%p.log",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p"] + lb.argv()
    env = lb.env() or dict(os.environ)
    env["LBHOST_ON_DEMAND_INSTANCES"] = "1"
    lb.proc = lb.session.spawn(lb.name, argv, lb.core, env=env)
    # Under valgrind lbhost compiles its strategy ~50× slower than usual.
    wait_http_ok(lb.port, timeout=180, proc=lb.proc)
    time.sleep(0.5)
    lb.pids = [lb.proc.pid] + child_pids(lb.proc.pid)


def collected(log_text):
    """Instructions callgrind counted, summed over the processes that printed a total (nginx's
    master and worker both do)."""
    return sum(int(n.replace(",", "")) for n in re.findall(r"Collected : ([\d,]+)", log_text))


def instructions_mode(args, session, ports, h):
    """Runs every LB of `args.instr_lbs` under callgrind `args.reps` times, interleaved.
    `h` is the harness module (Backends, LB classes, wrk helpers). Returns (table, rows)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("bench: --instructions needs valgrind (apt-get install valgrind)")
    backends = h.Backends(session, ports, args.load_core, 3)
    conns = args.instr_conns
    rows = []
    try:
        for rep in range(args.reps):
            for name in args.instr_lbs:
                port, admin = ports.take(2)
                lb = h.LB_CLASSES[name](session, port, admin, backends, conns, args.lb_core)
                out_dir = session.tmp / f"callgrind-{name}-{rep + 1}"
                out_dir.mkdir(exist_ok=True)
                start_under_callgrind(lb, out_dir, h.wait_http_ok, h.child_pids)
                try:
                    h.run_wrk(args, port, conns, "2s", args.load_core, latency=False)
                    callgrind_control("-i", "on")
                    out, _ = h.run_wrk(args, port, conns, h.wrk_seconds(args.instr_seconds),
                                       args.load_core, latency=False)
                    callgrind_control("-i", "off")
                    alive = lb.alive()
                finally:
                    # valgrind prints its totals as the LB exits
                    lb.session.stop(lb.proc, grace=30.0)
                log_text = "".join(p.read_text(errors="replace")
                                   for p in out_dir.glob("valgrind.*.log"))
                w = h.parse_wrk(out)
                ins = collected(log_text)
                errors = w["non2xx"] + w["socket_errors"]
                per = ins / w["requests"] if w["requests"] else float("nan")
                rows.append({"lb": name, "rep": rep + 1, "requests": w["requests"],
                             "instructions": ins, "per_request": per, "errors": errors,
                             "alive": alive})
                h.log(f"[instructions] {name:15} rep {rep + 1}: {w['requests']:,} requests, "
                      f"{per:,.0f} instructions/request"
                      f"{'' if alive else '  LB DIED'}{f'  errors {errors}' if errors else ''}")
    finally:
        backends.stop()
    return table(rows, args.instr_lbs), rows


def table(rows, names):
    peers = [n for n in ("nginx", "haproxy") if n in names]
    medians = {}
    lines = ["| LB | user-space instructions / request (median) | runs | spread | requests "
             "counted | errors |", "|---|---:|---:|---:|---:|---:|"]
    for name in names:
        mine = [r for r in rows if r["lb"] == name]
        per = [r["per_request"] for r in mine]
        m = statistics.median(per)
        medians[name] = m
        spread = (max(per) - min(per)) / m if m else float("nan")
        died = "" if all(r["alive"] for r in mine) else " LB DIED"
        lines.append(f"| {name} | {m:,.0f} | {len(per)} | ±{spread / 2:.1%} "
                     f"| {sum(r['requests'] for r in mine):,} "
                     f"| {sum(r['errors'] for r in mine)}{died} |")
    if peers and all(medians[p] > 0 for p in peers):
        lines += ["", "| LB | " + " | ".join(f"ratio to {p}" for p in peers) + " |",
                  "|---|" + "---:|" * len(peers)]
        for name in names:
            if name not in peers:
                lines.append(f"| {name} | "
                             + " | ".join(f"{medians[name] / medians[p]:.2f}×" for p in peers)
                             + " |")
    return "\n".join(lines)
