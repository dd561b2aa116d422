#!/usr/bin/env python3
"""Requests/s per core and latency of `bonus serve` against `wasmtime serve`
on the same components, with a raw hyper server as the physical limit.

The plain wasmtime host (`plain-host`, bench/src/plain.rs) is wasmtime with
the settings `bonus serve` uses and nothing of Bonus's own: the rate Bonus
should keep. Every server is pinned to one core and the load generator (wrk) to the other;
targets are measured in interleaved rounds and the median round is reported,
as ratios against `wasmtime serve` and raw hyper measured in the same run.
Traffic goes to 127.0.0.1 only.

Usage: bench/runtime.py [--rounds 3] [--seconds 10] [--connections 32]
                        [--compare-bonus PATH] [--compare-hello WASM]
                        [--no-wasmtime]
--compare-bonus PATH adds another `bonus` binary's hello (a build of an
earlier commit, say) to the same interleaved rounds, for an A/B of a
change. --compare-hello WASM adds another hello component (built with an
earlier bonus-sdk, say) under both `bonus serve` and `wasmtime serve`,
each ratio against `wasmtime serve` of that same component. --no-wasmtime leaves out the `wasmtime serve` targets (and the
ratios against them) on a machine without the wasmtime CLI.
Needs: wrk (apt-get install wrk), wasmtime 48 (cargo install wasmtime-cli
--version 48.0.8 --locked), taskset. Builds bonus in release itself.
"""
import argparse, os, re, shutil, socket, statistics, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUESTS = os.path.join(ROOT, "target/guests/wasm32-wasip2/release")
from benchlib import LOAD_CORE, SERVER_CORE, WASMTIME_DEFAULT, checked_wasmtime, run, wrk



def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not start listening")



def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--fib-n", type=int, default=20)
    p.add_argument("--wasmtime", default=WASMTIME_DEFAULT)
    p.add_argument("--compare-bonus", metavar="PATH", help="another bonus binary, measured in the same rounds")
    p.add_argument("--compare-hello", metavar="WASM", help="another hello component, under bonus and wasmtime serve")
    p.add_argument("--no-wasmtime", action="store_true", help="leave out the wasmtime serve targets")
    args = p.parse_args()

    run(["cargo", "build", "--release", "-q", "-p", "bonus-cli", "-p", "bonus-bench"], cwd=ROOT)
    run(["cargo", "build", "--release", "-q"], cwd=os.path.join(ROOT, "examples"))
    version = "none (--no-wasmtime)"
    if not args.no_wasmtime:
        args.wasmtime, version = checked_wasmtime(args.wasmtime)
    print(f"anchor: {version}", file=sys.stderr)

    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    env["RUST_LOG"] = "error"
    env["BONUS_HOME"] = os.path.join(ROOT, "target/bench-home")
    bonus = os.path.join(ROOT, "target/release/bonus")
    hyper = os.path.join(ROOT, "target/release/hyper-hello")
    plain = os.path.join(ROOT, "target/release/plain-host")
    fib_path = f"/?n={args.fib_n}"
    targets = {
        "hyper hello": (lambda port: [hyper, f"127.0.0.1:{port}"], "/"),
        "wasmtime serve hello": (lambda port: [args.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", f"{GUESTS}/hello.wasm"], "/"),
        "plain wasmtime host hello": (lambda port: [plain, f"{GUESTS}/hello.wasm", f"127.0.0.1:{port}"], "/"),
        "bonus serve hello": (lambda port: [bonus, "serve", f"{GUESTS}/hello.wasm", "--threads", "1", "--addr", f"127.0.0.1:{port}", "-q"], "/"),
        "bonus serve hello (no fuel)": (lambda port: [bonus, "serve", f"{GUESTS}/hello.wasm", "--threads", "1", "--no-fuel", "--addr", f"127.0.0.1:{port}", "-q"], "/"),
        "wasmtime serve fib": (lambda port: [args.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", f"{GUESTS}/fib.wasm"], fib_path),
        "bonus serve fib": (lambda port: [bonus, "serve", f"{GUESTS}/fib.wasm", "--threads", "1", "--addr", f"127.0.0.1:{port}", "-q"], fib_path),
    }
    if args.compare_bonus:
        other = os.path.abspath(args.compare_bonus)
        targets["compared bonus serve hello"] = (lambda port: [other, "serve", f"{GUESTS}/hello.wasm", "--threads", "1", "--addr", f"127.0.0.1:{port}", "-q"], "/")
    if args.compare_hello:
        hello = os.path.abspath(args.compare_hello)
        targets["wasmtime serve compared hello"] = (lambda port: [args.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}", hello], "/")
        targets["bonus serve compared hello"] = (lambda port: [bonus, "serve", hello, "--threads", "1", "--addr", f"127.0.0.1:{port}", "-q"], "/")
    if args.no_wasmtime:
        targets = {name: target for name, target in targets.items() if not name.startswith("wasmtime")}
    results = {name: [] for name in targets}
    for round_idx in range(args.rounds):
        # Odd rounds go in reverse order, so no target always runs first
        # (or right after the same neighbour) on a machine that drifts.
        order = list(targets.items())
        for name, (command, path) in (order if round_idx % 2 == 0 else order[::-1]):
            port = free_port()
            proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + command(port), env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_listening(port, proc)
                url = f"http://127.0.0.1:{port}{path}"
                wrk(url, 2, args.connections)  # warm-up
                results[name].append(wrk(url, args.seconds, args.connections))
            finally:
                proc.kill()
                proc.wait()
            print(f"round {round_idx + 1} {name}: {results[name][-1]}", file=sys.stderr)

    def median(name):
        runs = results[name]
        rps = statistics.median(r[0] for r in runs)
        return rps, statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs)

    hyper_rps = median("hyper hello")[0]
    plain_rps = median("plain wasmtime host hello")[0]
    print(f"\n{'target':<32}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs wasmtime':>13}{'vs plain':>10}{'vs hyper':>10}")
    for name in targets:
        rps, p50, p99 = median(name)
        anchor = ("wasmtime serve fib" if "fib" in name
                  else "wasmtime serve compared hello" if "compared hello" in name
                  else "wasmtime serve hello")
        vs_wasmtime = rps / median(anchor)[0] if anchor in results else float("nan")
        vs_plain = f"{rps / plain_rps:>9.2f}x" if "fib" not in name else f"{'':>10}"
        print(f"{name:<32}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{vs_wasmtime:>12.2f}x{vs_plain}{rps / hyper_rps:>9.2f}x")
    print(f"\n{args.rounds} rounds x {args.seconds}s, wrk -t1 -c{args.connections}, server on core {SERVER_CORE}, "
          f"wrk on core {LOAD_CORE}; medians of rounds; anchor {version}")


if __name__ == "__main__":
    main()
