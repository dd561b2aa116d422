#!/usr/bin/env python3
"""Cold start as a user meets it: `bonus serve COMPONENT` with an empty
compiled-code cache, from the process's start to its first 200 answer.
Tiered (the default: Winch's code first, Cranelift's in the background)
against `--no-tiered` (Cranelift before serving) in the same run, rounds
alternating, medians reported with the ratio. Goal for hello-js: the
tiered first response within 1 s.

Then, unless `--during 0`, what each serves in the SECONDS right after its
first response (wrk -t1 -c4 on core 1): tiered, while Cranelift compiles
in the background; `--no-tiered`, on Cranelift's code with nothing
compiling, the anchor.

Usage: bench/cold.py [--rounds 3] [--during 3] [--bonus PATH] [COMPONENT]
COMPONENT defaults to target/guests/js/hello-js.wasm (built by
./scripts/test). Both cores are the server's (nothing else is measured).
Traffic goes to 127.0.0.1 only.
"""
import argparse, os, shutil, signal, socket, statistics, subprocess, tempfile, time, urllib.request

from benchlib import ROOT, run, wrk


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def first_response_ms(bonus, component, tiered, during):
    """Milliseconds from spawning `bonus serve` to its first 200 on `/`, and
    wrk's (requests/s, p50, p99) over the `during` seconds after it (None
    for 0)."""
    cache = tempfile.mkdtemp(prefix="bonus-cold-")
    addr = f"127.0.0.1:{free_port()}"
    cmd = [bonus, "serve", component, "--addr", addr, "--cache-dir", cache, "-q"]
    if not tiered:
        cmd.append("--no-tiered")
    env = {k: v for k, v in os.environ.items() if k != "RUST_BACKTRACE"}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = started + 120
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"bonus serve exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://{addr}/", timeout=60) as response:
                    response.read()
                    if response.status == 200:
                        ms = (time.perf_counter() - started) * 1e3
                        return ms, (wrk(f"http://{addr}/", during, 4) if during else None)
            except OSError:
                time.sleep(0.002)
        raise RuntimeError("no answer within 120 s")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        shutil.rmtree(cache, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--during", type=int, default=3, help="seconds of load after the first response (0: none)")
    p.add_argument("--bonus", help="use this bonus binary instead of building target/release/bonus")
    p.add_argument("component", nargs="?", default=os.path.join(ROOT, "target/guests/js/hello-js.wasm"))
    args = p.parse_args()
    bonus = args.bonus
    if not bonus:
        run(["cargo", "build", "--release", "-q", "-p", "bonus-cli"], cwd=ROOT)
        bonus = os.path.join(ROOT, "target/release/bonus")
    if not os.path.exists(args.component):
        raise SystemExit(f"{args.component} does not exist; run ./scripts/test once to build the guests")
    samples = {True: [], False: []}
    served = {True: [], False: []}
    for r in range(args.rounds):
        # Alternate the order: a fixed one favours whichever runs second.
        for tiered in ([True, False] if r % 2 == 0 else [False, True]):
            ms, load = first_response_ms(bonus, args.component, tiered, args.during)
            samples[tiered].append(ms)
            line = f"  round {r}: {'tiered' if tiered else 'cranelift first'} {ms:.0f} ms"
            if load:
                served[tiered].append(load)
                line += f", then {load[0]:.0f} req/s (p50 {load[1]:.2f} ms)"
            print(line, flush=True)
    tiered, cranelift = statistics.median(samples[True]), statistics.median(samples[False])
    print(f"\n{os.path.basename(args.component)} ({os.path.getsize(args.component) / 2**20:.1f} MiB), "
          f"first response with an empty cache, medians of {args.rounds}:")
    print(f"  tiered (Winch first)     {tiered:>8.0f} ms")
    print(f"  --no-tiered (Cranelift)  {cranelift:>8.0f} ms")
    print(f"  ratio                    {tiered / cranelift:>8.2f}x")
    if served[True]:
        def med(tier, i):
            return statistics.median(load[i] for load in served[tier])
        print(f"\nserved in the {args.during} s after the first response (wrk -c4), medians:")
        print(f"  tiered, Cranelift compiling  {med(True, 0):>8.0f} req/s  p50 {med(True, 1):.2f} ms  p99 {med(True, 2):.2f} ms")
        print(f"  --no-tiered, nothing to do   {med(False, 0):>8.0f} req/s  p50 {med(False, 1):.2f} ms  p99 {med(False, 2):.2f} ms")
        print(f"  ratio                        {med(True, 0) / med(False, 0):>8.2f}x")


if __name__ == "__main__":
    main()
