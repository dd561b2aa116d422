#!/usr/bin/env python3
"""Artifact distribution: time for an artifact to reach 3 and 10 other
nodes on loopback (all fetching at once), against one plain TCP copy of the
same bytes to one receiver measured in the same run (the issue's anchor),
and against N plain TCP copies at once from one sender (the machine's
floor: no verification, no store), printed as ratios; and deploy ->
runnable on a cold node.

Usage: bench/registry.py [--rounds 3] [--fetchers 3,10] [--sizes-mib 2,50]
                         [--compare-libp2p] [--data-root DIR] [--no-cold]
Traffic goes to 127.0.0.1 only. Builds bonus in release itself (into
$CARGO_TARGET_DIR if set); BONUS_GUESTS names a directory holding an
already built hello.wasm (then the examples are not built).
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, threading, time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
BONUS = os.path.join(TARGET, "release/bonus")
DATA_ROOT = None  # --data-root: where nodes keep their stores
GUESTS = os.environ.get("BONUS_GUESTS", os.path.join(ROOT, "target/guests/wasm32-wasip2/release"))


def leb128(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def inflated_component(size, fill):
    """hello.wasm with a custom section appended: a valid component of ~size bytes."""
    wasm = open(os.path.join(GUESTS, "hello.wasm"), "rb").read()
    name = b"bonus-padding"
    payload = os.urandom(max(0, size - len(wasm) - 32)) if fill is None else bytes([fill]) * max(0, size - len(wasm) - 32)
    content = leb128(len(name)) + name + payload
    return wasm + b"\x00" + leb128(len(content)) + content


def request(method, url, body=None, timeout=120):
    req = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class Node:
    def __init__(self, bootstrap=(), direct=True):
        self.dir = tempfile.mkdtemp(prefix="bonus-bench-", dir=DATA_ROOT)
        cmd = [BONUS, "node", "--json", "-q", "--api", "127.0.0.1:0", "--p2p", "/ip4/127.0.0.1/tcp/0", "--data-dir", self.dir]
        if not direct:
            cmd.append("--no-direct-segments")
        for peer in bootstrap:
            cmd += ["--bootstrap", peer]
        env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
        env["RUST_LOG"] = "error"
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        ready = json.loads(self.proc.stdout.readline())
        self.api, self.p2p = ready["api"], ready["p2p"][0]
        self.peer_id = self.p2p.rsplit("/p2p/", 1)[-1]

    def wait_peers(self, n):
        deadline = time.time() + 20
        while time.time() < deadline:
            status, body = request("GET", self.api + "/v1/node")
            if json.loads(body)["connected_peers"] >= n:
                return
            time.sleep(0.05)
        raise RuntimeError("peers did not connect")

    def cpu_ticks(self):
        fields = open(f"/proc/{self.proc.pid}/stat").read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    def wait_idle(self):
        """Until the node has used at most one clock tick of CPU in each of
        two 100 ms windows: an upload's compile and serve-cache load are
        done, and do not share the cores with the transfer timed next."""
        deadline = time.time() + 30
        quiet, last = 0, self.cpu_ticks()
        while quiet < 2 and time.time() < deadline:
            time.sleep(0.1)
            now = self.cpu_ticks()
            quiet = quiet + 1 if now - last <= 1 else 0
            last = now

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def spread(size, rounds, n_fetchers, direct=True):
    """Seconds for an artifact uploaded to one node to reach n others
    (segments over libp2p streams only, if not direct)."""
    samples = []
    for r in range(rounds):
        wasm = inflated_component(size, None)
        origin = Node(direct=direct)
        others = [Node([origin.p2p], direct=direct) for _ in range(n_fetchers)]
        try:
            for node in others:
                node.wait_peers(1)
            blake3_id = subprocess.run([BONUS, "--json", "inspect", write_temp(wasm)], capture_output=True, text=True, check=True)
            artifact = json.loads(blake3_id.stdout)["b3sum"]
            status, body = request("PUT", f"{origin.api}/v1/artifacts/{artifact}", wasm)
            assert status == 201, body
            origin.wait_idle()
            results = [None] * n_fetchers
            def fetch(i):
                results[i] = request("POST", f"{others[i].api}/v1/artifacts/{artifact}/fetch")
            cpu_before = [node.cpu_ticks() for node in [origin] + others]
            started = time.perf_counter()
            threads = [threading.Thread(target=fetch, args=(i,)) for i in range(n_fetchers)]
            for t in threads: t.start()
            for t in threads: t.join()
            elapsed = time.perf_counter() - started
            tick_ms = 1e3 / os.sysconf("SC_CLK_TCK")
            cpu_ms = [(node.cpu_ticks() - before) * tick_ms for node, before in zip([origin] + others, cpu_before)]
            for status, body in results:
                assert status == 200, body
            sources = [json.loads(body)["segments_by_peer"] for _, body in results]
            direct = sum(json.loads(body).get("direct_streams", 0) for _, body in results)
            from_origin = sum(s.get(origin.peer_id, 0) for s in sources)
            samples.append(elapsed)
            print(f"  {size >> 20} MiB to {n_fetchers} nodes{'' if direct else ' (libp2p only)'}: {elapsed * 1e3:.0f} ms; segments from the origin {from_origin} of {sum(sum(s.values()) for s in sources)}; direct streams {direct}; by source: {[sorted(s.values(), reverse=True) for s in sources]}; CPU ms: origin {cpu_ms[0]:.0f}, fetchers {sum(cpu_ms[1:]):.0f}", file=sys.stderr)
        finally:
            for node in [origin] + others:
                node.stop()
    return statistics.median(samples)


def write_temp(data):
    fd, path = tempfile.mkstemp(suffix=".wasm")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return path


def cold_deploy(size, rounds):
    """Seconds from `bonus deploy --no-upload` on a cold node to its first 200."""
    samples = []
    for r in range(rounds):
        home = tempfile.mkdtemp(prefix="bonus-bench-home-")
        env = dict(os.environ, BONUS_HOME=home)
        subprocess.run([BONUS, "-q", "keys", "new"], env=env, check=True, capture_output=True)
        path = write_temp(inflated_component(size, None))
        origin = Node()
        cold = Node([origin.p2p])
        try:
            cold.wait_peers(1)
            subprocess.run([BONUS, "-q", "deploy", path, "--name", "bench", "--node", origin.api], env=env, check=True, capture_output=True)
            started = time.perf_counter()
            subprocess.run([BONUS, "-q", "deploy", path, "--name", "bench", "--node", cold.api, "--no-upload"], env=env, check=True, capture_output=True)
            while True:
                status, body = request("GET", cold.api + "/fn/bench/")
                if status == 200:
                    break
            elapsed = time.perf_counter() - started
            samples.append(elapsed)
            print(f"  {size >> 20} MiB deploy -> runnable on a cold node: {elapsed * 1e3:.0f} ms", file=sys.stderr)
        finally:
            origin.stop()
            cold.stop()
            shutil.rmtree(home, ignore_errors=True)
    return statistics.median(samples)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--fetchers", default="3,10", help="comma-separated node counts")
    p.add_argument("--sizes-mib", default="2,50", help="comma-separated artifact sizes")
    p.add_argument("--data-root", help="directory for the nodes' stores (e.g. /dev/shm, where fsync is free)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold deploy case")
    p.add_argument("--no-build", action="store_true", help="use the binaries already built")
    p.add_argument("--compare-libp2p", action="store_true",
                   help="also measure each case with segments over libp2p streams only (nodes started with --no-direct-segments)")
    args = p.parse_args()
    global DATA_ROOT
    DATA_ROOT = args.data_root
    if not args.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "bonus-cli", "-p", "bonus-bench"], cwd=ROOT, check=True)
    if "BONUS_GUESTS" not in os.environ:
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=os.path.join(ROOT, "examples"), check=True)
    rows = []
    for size in [int(m) << 20 for m in args.sizes_mib.split(",")]:
        path = write_temp(inflated_component(size, None))
        for n_fetchers in [int(n) for n in args.fetchers.split(",")]:
            # The anchor, measured right before each case.
            copies = lambda receivers: float(subprocess.run([os.path.join(TARGET, "release/tcp-copy"), path, "5", str(receivers)], capture_output=True, text=True, check=True).stdout)
            copy_ms, floor_ms = copies(1), copies(n_fetchers)
            spread_ms = spread(size, args.rounds, n_fetchers) * 1e3
            libp2p_ms = spread(size, args.rounds, n_fetchers, direct=False) * 1e3 if args.compare_libp2p else None
            rows.append((size, n_fetchers, spread_ms, copy_ms, floor_ms, libp2p_ms))
    cold_ms = None if args.no_cold else cold_deploy(2 << 20, args.rounds) * 1e3
    print(f"\nstores in {DATA_ROOT or tempfile.gettempdir()}")
    print(f"\n{'artifact':<10}{'to nodes':>9}{'ms':>9}{'1 TCP copy ms':>15}{'ratio':>8}{'N copies ms':>13}{'ratio':>8}{'libp2p only ms':>16}{'ratio':>8}")
    for size, n_fetchers, spread_ms, copy_ms, floor_ms, libp2p_ms in rows:
        libp2p = f"{libp2p_ms:>16.0f}{libp2p_ms / copy_ms:>7.1f}x" if libp2p_ms else ""
        print(f"{size >> 20:>4} MiB  {n_fetchers:>9}{spread_ms:>9.0f}{copy_ms:>15.2f}{spread_ms / copy_ms:>7.1f}x{floor_ms:>13.2f}{spread_ms / floor_ms:>7.1f}x{libp2p}")
    print("ratio: to one TCP copy (the goal's anchor), then to N copies at once from one sender (this machine's floor)")
    if cold_ms is not None:
        print(f"\n2 MiB deploy -> runnable on a cold node: {cold_ms:.0f} ms (median of {args.rounds})")


if __name__ == "__main__":
    main()
