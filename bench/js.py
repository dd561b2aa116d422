#!/usr/bin/env python3
"""hello-js (JavaScript, componentize-js) against hello (Rust) on the same
`bonus node`: latency, requests/s, fuel, component size and first-compile time.

One node (release build) is pinned to one core, wrk to the other. Both
functions are deployed to it with `bonus deploy` (the upload compiles the
component: that is the first-compile time, on an empty cache). Then, in
interleaved rounds, each function is measured twice: latency with one
connection (per-request p50/p99, no queueing) and throughput with many.
Medians of rounds are reported, with hello-js as a ratio of hello measured
in the same run. Traffic goes to 127.0.0.1 only.

Usage: bench/js.py [--rounds 3] [--seconds 10] [--connections 32] [--bonus PATH]
Needs: wrk (apt-get install wrk), taskset, node 20+ (npm ci in sdk-js).
Builds bonus in release and both components itself.
"""
import argparse, json, os, re, shutil, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from benchlib import LOAD_CORE, SERVER_CORE, run, wrk




def get(url):
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, response.headers, response.read()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--bonus", help="use this bonus binary instead of building target/release/bonus")
    args = p.parse_args()

    if not args.bonus:
        run(["cargo", "build", "--release", "-q", "-p", "bonus-cli"], cwd=ROOT)
    run(["cargo", "build", "--release", "-q"], cwd=os.path.join(ROOT, "examples"))
    if not os.path.isdir(os.path.join(ROOT, "sdk-js/node_modules")):
        run(["npm", "ci"], cwd=os.path.join(ROOT, "sdk-js"))
    js_wasm = os.path.join(ROOT, "target/guests/js/hello-js.wasm")
    run(["node", "packages/sdk/bin/bonus-build-js.js", os.path.join(ROOT, "examples/hello-js"), "-o", js_wasm, "-q"],
        cwd=os.path.join(ROOT, "sdk-js"), stdout=subprocess.DEVNULL)
    wasms = {
        "hello": os.path.join(ROOT, "target/guests/wasm32-wasip2/release/hello.wasm"),
        "hello-js": js_wasm,
    }

    bonus = args.bonus or os.path.join(ROOT, "target/release/bonus")
    env = {k: v for k, v in os.environ.items() if k not in ("RUST_BACKTRACE", "RUST_LIB_BACKTRACE")}
    env["RUST_LOG"] = "error"
    work = tempfile.mkdtemp(prefix="bonus-bench-js-")
    env["BONUS_HOME"] = os.path.join(work, "home")
    node = subprocess.Popen(
        ["taskset", "-c", SERVER_CORE, bonus, "node", "--json", "--data-dir", os.path.join(work, "data"),
         "--api", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        api = json.loads(node.stdout.readline())["api"]
        run([bonus, "keys", "new", "-q"], env=env)
        compile_s, fuel = {}, {}
        for name, wasm in wasms.items():
            started = time.monotonic()
            run([bonus, "deploy", wasm, "--name", name, "--node", api, "-q"], env=env, stdout=subprocess.DEVNULL)
            compile_s[name] = time.monotonic() - started
            status, headers, body = get(f"{api}/fn/{name}/")
            assert status == 200 and body == b"hello", (name, status, body)
            fuel[name] = int(headers["x-bonus-fuel"])

        results = {(name, kind): [] for name in wasms for kind in ("latency", "throughput")}
        for round_idx in range(args.rounds):
            for name in wasms:
                url = f"{api}/fn/{name}/"
                wrk(url, 2, args.connections)  # warm-up
                results[(name, "latency")].append(wrk(url, args.seconds, 1))
                results[(name, "throughput")].append(wrk(url, args.seconds, args.connections))
                print(f"round {round_idx + 1} {name}: c1 {results[(name, 'latency')][-1]}, "
                      f"c{args.connections} {results[(name, 'throughput')][-1]}", file=sys.stderr)
    finally:
        node.kill()
        node.wait()
        shutil.rmtree(work, ignore_errors=True)

    def median(name, kind, idx):
        return statistics.median(r[idx] for r in results[(name, kind)])

    print(f"\n{'function':<10}{'bytes':>12}{'1st compile s':>15}{'fuel/req':>10}"
          f"{'c1 req/s':>10}{'c1 p50 ms':>11}{'c1 p99 ms':>11}{f'c{args.connections} req/s':>11}{f'c{args.connections} p50':>9}{f'c{args.connections} p99':>9}")
    for name in wasms:
        print(f"{name:<10}{os.path.getsize(wasms[name]):>12}{compile_s[name]:>15.1f}{fuel[name]:>10}"
              f"{median(name, 'latency', 0):>10.0f}{median(name, 'latency', 1):>11.2f}{median(name, 'latency', 2):>11.2f}"
              f"{median(name, 'throughput', 0):>11.0f}{median(name, 'throughput', 1):>9.2f}{median(name, 'throughput', 2):>9.2f}")
    ratio = lambda kind, idx: median("hello-js", kind, idx) / median("hello", kind, idx)
    print(f"\nhello-js / hello: size {os.path.getsize(wasms['hello-js']) / os.path.getsize(wasms['hello']):.0f}x, "
          f"fuel {fuel['hello-js'] / fuel['hello']:.0f}x, c1 p50 {ratio('latency', 1):.2f}x, "
          f"c{args.connections} req/s {ratio('throughput', 0):.2f}x")
    p50 = median("hello-js", "latency", 1)
    print(f"goal hello-js p50 <= 2 ms (one connection): {'met' if p50 <= 2.0 else 'NOT met'} ({p50:.2f} ms)")
    print(f"\n{args.rounds} rounds x {args.seconds}s per measurement, wrk -t1, node on core {SERVER_CORE}, "
          f"wrk on core {LOAD_CORE}; medians of rounds")


if __name__ == "__main__":
    main()
