#!/usr/bin/env python3
"""The network's request path against its anchors, in one run: hello through
`bonus up`'s router → worker (fuel and receipts on), the worker alone (the
path the router calls), `wasmtime serve` on the same component and a raw
hyper server. Also the router hop's added latency (p50 at one connection,
router minus worker alone) beside the hop of the least reverse proxy
(`hyper-proxy`: hyper server + pooled hyper client, nothing else) in front
of the same worker, and deploy → first response of a 2 MB component
through the router on workers that have never seen it.

Then the edge topology: one more node joins the network running a router
and a worker in one process (`bonus node --role router --role worker`, its
keys funded from the dev account), so the router calls its own worker in
process, with no HTTP hop; `bonus up`'s two workers answer health probes
20 ms late (`--probe-delay-ms`), i.e. they stand farther away, so the edge
router keeps hello on its own worker. Measured like the rest: hello
through the edge router, and its hop against its worker's own HTTP API.

The whole network (4 validators, 2 workers, router) is pinned to one core,
as is each anchor; wrk runs on the other. Targets are measured in rounds and
the median round is reported. Traffic goes to 127.0.0.1 only.

Usage: bench/network.py [--rounds 3] [--seconds 10] [--connections 32]
Needs: wrk, taskset, and the wasmtime 48 CLI (`./scripts/test` installs it
into target/wasmtime-cli; its version is checked). Builds bonus in release.
"""
import argparse, json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUESTS = os.path.join(ROOT, "target/guests/wasm32-wasip2/release")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import SERVER_CORE, WASMTIME_DEFAULT, checked_wasmtime, run, wrk  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_base():
    for base in range(30000, 60000, 97):
        try:
            socks = []
            for i in range(50):
                s = socket.socket()
                s.bind(("127.0.0.1", base + i))
                socks.append(s)
            for s in socks:
                s.close()
            return base
        except OSError:
            for s in socks:
                s.close()
    raise RuntimeError("no 50 free ports")


def wait_ok(url, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer 200")


def inflated(src, dst, size):
    """hello with a custom section appended: a valid component of `size` bytes."""
    data = open(src, "rb").read()
    name = b"bonus-bench-padding"
    pad = size - len(data)

    def leb(n):
        out = bytearray()
        while True:
            b = n & 0x7F
            n >>= 7
            out.append(b | (0x80 if n else 0))
            if not n:
                return bytes(out)
    body_len = pad - 1 - 5  # id byte, 5-byte LEB length (padded form below)
    payload = leb(len(name)) + name
    fill = body_len - len(payload)
    length = body_len
    # Fixed 5-byte LEB so the total is exact.
    fixed = bytes([(length >> (7 * i) & 0x7F) | (0x80 if i < 4 else 0) for i in range(5)])
    open(dst, "wb").write(data + b"\x00" + fixed + payload + os.urandom(fill))


def start_edge(bonus, env, ready, home, base, manifest):
    """A node running a router and a worker in one process, joined to the
    network: its two keys made and funded for their stakes, then started
    pinned beside the network. Returns (process, router URL, its worker's
    direct URL for hello)."""
    ledger = ready["ledger"][0]
    params = json.load(urllib.request.urlopen(f"{ledger}/v1/ledger/status"))["params"]
    data = os.path.join(home, "edge")
    os.makedirs(os.path.join(data, "worker"))
    keys = {}
    for name, path, stake in [("edge-router", "router.key", params["router_stake_min"]),
                              ("edge-worker", "worker/node.key", params["worker_stake_min"])]:
        made = subprocess.run([bonus, "keys", "new", "--name", name, "--json"], env=env, check=True,
                              capture_output=True, text=True).stdout
        shutil.copy(os.path.join(home, "keys", f"{name}.key"), os.path.join(data, path))
        need = int(stake) + 100 * int(params["tx_fee"])
        keys[name] = json.loads(made)["public_key"]
        run([bonus, "transfer", keys[name], str(need), "-q", "--ledger", ledger],
            env=env, stdout=subprocess.DEVNULL)
    listen = free_port()
    api = f"127.0.0.1:{base + 35}"
    edge = subprocess.Popen(["taskset", "-c", SERVER_CORE, bonus, "node", "--role", "router", "--role", "worker",
                             "--data-dir", data, "--listen", f"127.0.0.1:{listen}", "--api", api,
                             "--p2p", f"/ip4/127.0.0.1/tcp/{base + 45}"]
                            + [a for url in ready["ledger"] for a in ("--ledger", url)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    router = f"http://127.0.0.1:{listen}"
    direct = f"http://{api}/v1/run/{manifest}/"
    wait_ok(f"{router}/fn/hello/")
    wait_ok(direct)
    # Its own worker, not a far one, answers through it.
    deadline = time.time() + 60
    while True:
        with urllib.request.urlopen(f"{router}/fn/hello/", timeout=5) as r:
            if r.headers.get("x-bonus-worker", "") == keys["edge-worker"]:
                return edge, router, direct
        if time.time() > deadline:
            raise RuntimeError("the edge router does not send hello to its own worker")
        time.sleep(0.2)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=int, default=10)
    p.add_argument("--connections", type=int, default=32)
    p.add_argument("--wasmtime", default=WASMTIME_DEFAULT)
    args = p.parse_args()
    args.wasmtime, version = checked_wasmtime(args.wasmtime)

    run(["cargo", "build", "--release", "-q", "-p", "bonus-cli", "--bin", "bonus", "-p", "bonus-bench", "--bin", "hyper-hello", "--bin", "hyper-proxy"], cwd=ROOT)
    run(["cargo", "build", "--release", "-q"], cwd=os.path.join(ROOT, "examples"))
    bonus = os.path.join(ROOT, "target/release/bonus")
    hyper = os.path.join(ROOT, "target/release/hyper-hello")
    proxy_bin = os.path.join(ROOT, "target/release/hyper-proxy")
    home = tempfile.mkdtemp(prefix="bonus-bench-net-")
    env = dict(os.environ, BONUS_HOME=home, BONUS_LOG="error", RUST_LOG="error")
    base = free_base()
    proxy = edge = None
    up = subprocess.Popen(["taskset", "-c", SERVER_CORE, bonus, "up", "--json", "-q", "--port", str(base),
                           "--example", "hello", "--examples", os.path.join(ROOT, "examples"),
                           "--probe-delay-ms", "20,20"],
                          env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready = json.loads(up.stdout.readline())
        router = ready["router"]
        worker = ready["workers"][0]
        wait_ok(f"{router}/fn/hello/")
        name = json.load(urllib.request.urlopen(f"{ready['ledger'][0]}/v1/ledger/names/hello"))
        manifest = name["manifest_id"].split(":")[-1]
        direct = f"{worker}/v1/run/{manifest}/"
        wait_ok(direct)

        # Deploy → first response through the router, 2 MB, never seen by any worker.
        cold = []
        for i in range(args.rounds):
            path = os.path.join(home, f"big{i}.wasm")
            inflated(os.path.join(GUESTS, "hello.wasm"), path, 2 << 20)
            started = time.time()
            run([bonus, "deploy", path, "--name", f"big{i}", "-q"], env=env, stdout=subprocess.DEVNULL)
            wait_ok(f"{router}/fn/big{i}/")
            cold.append((time.time() - started) * 1e3)

        anchors = {
            "hyper hello": lambda port: [hyper, f"127.0.0.1:{port}"],
            "wasmtime serve hello": lambda port: [args.wasmtime, "serve", "-Scli", "--addr", f"127.0.0.1:{port}",
                                                  os.path.join(GUESTS, "hello.wasm")],
        }
        proxy_port = free_port()
        proxy = subprocess.Popen(["taskset", "-c", SERVER_CORE, proxy_bin, f"127.0.0.1:{proxy_port}",
                                  f"{worker}/v1/run/{manifest}"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        via_proxy = f"http://127.0.0.1:{proxy_port}/"
        wait_ok(via_proxy)
        edge, edge_router, edge_direct = start_edge(bonus, env, ready, home, base, manifest)
        targets = [("router → worker", f"{router}/fn/hello/"), ("hyper proxy → worker", via_proxy),
                   ("worker alone", direct), ("edge router, own worker", f"{edge_router}/fn/hello/"),
                   ("edge worker alone", edge_direct)]
        results = {k: [] for k in [label for label, _ in targets] + list(anchors)}
        hop = {label: [] for label, _ in targets}
        for r in range(args.rounds):
            for label, url in targets:
                wrk(url, 2, args.connections)
                results[label].append(wrk(url, args.seconds, args.connections))
                hop[label].append(wrk(url, args.seconds, 1)[1])
                print(f"round {r + 1} {label}: {results[label][-1]}", file=sys.stderr)
            for label, command in anchors.items():
                port = free_port()
                proc = subprocess.Popen(["taskset", "-c", SERVER_CORE] + command(port), env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                try:
                    wait_ok(f"http://127.0.0.1:{port}/")
                    url = f"http://127.0.0.1:{port}/"
                    wrk(url, 2, args.connections)
                    results[label].append(wrk(url, args.seconds, args.connections))
                finally:
                    proc.kill()
                    proc.wait()
                print(f"round {r + 1} {label}: {results[label][-1]}", file=sys.stderr)
    finally:
        for proc in [proxy, edge]:
            if proc is not None:
                proc.terminate()
                proc.wait()
        up.terminate()
        up.wait()
        shutil.rmtree(home, ignore_errors=True)

    med = {k: tuple(statistics.median(x[i] for x in v) for i in range(3)) for k, v in results.items()}
    wasmtime_rps, hyper_rps = med["wasmtime serve hello"][0], med["hyper hello"][0]
    print(f"\n{'target':<24}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'vs wasmtime':>13}{'vs hyper':>10}")
    for k, (rps, p50, p99) in med.items():
        print(f"{k:<24}{rps:>10.0f}{p50:>9.2f}{p99:>9.2f}{rps / wasmtime_rps:>12.2f}x{rps / hyper_rps:>9.2f}x")
    alone = statistics.median(hop["worker alone"])
    added = statistics.median(hop["router → worker"]) - alone
    proxied = statistics.median(hop["hyper proxy → worker"]) - alone
    print(f"\nrouter hop, p50 at 1 connection: {statistics.median(hop['router → worker']) * 1e3:.0f} µs through the router, "
          f"{alone * 1e3:.0f} µs to the worker alone: +{added * 1e3:.0f} µs; "
          f"a bare hyper proxy's hop in the same run: +{proxied * 1e3:.0f} µs (router {added / proxied:.2f}x it)")
    edge_alone = statistics.median(hop["edge worker alone"])
    edge_added = statistics.median(hop["edge router, own worker"]) - edge_alone
    print(f"edge router hop (its own worker, in process), p50 at 1 connection: "
          f"{statistics.median(hop['edge router, own worker']) * 1e3:.0f} µs through the edge router, "
          f"{edge_alone * 1e3:.0f} µs to that worker's HTTP API alone: {edge_added * 1e3:+.0f} µs")
    print(f"deploy → first response through the router, 2 MB component, cold workers: "
          f"median {statistics.median(cold):.0f} ms of {[round(c) for c in cold]} (includes ledger finality)")
    print(f"\n{args.rounds} rounds x {args.seconds}s, wrk -t1 -c{args.connections}; the network and each anchor "
          f"pinned to core {SERVER_CORE}; medians of rounds; anchor {version}")


if __name__ == "__main__":
    main()
