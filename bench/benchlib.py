"""Shared helpers for the benchmark scripts beside this file: running
commands and measuring with wrk pinned to the load core."""
import os, re, shutil, subprocess, sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASMTIME_VERSION = "48.0.8"
WASMTIME_DEFAULT = os.path.join(ROOT, "target/wasmtime-cli/bin/wasmtime")

SERVER_CORE, LOAD_CORE = "0", "1"


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def wrk(url, seconds, connections):
    """(requests/s, p50 ms, p99 ms) of wrk -t1 on LOAD_CORE; any non-2xx is an error."""
    out = subprocess.run(
        ["taskset", "-c", LOAD_CORE, "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", url],
        check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def latency(q):
        m = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s)", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non2xx:
        raise RuntimeError(f"{url}: {non2xx.group(1)} non-2xx responses")
    return rps, latency(50), latency(99)


def checked_wasmtime(path):
    """The wasmtime CLI at `path` (else on PATH) and its version line; exits
    unless it is the version the runtime embeds, so the anchor is the same
    wasmtime, not whatever PATH holds."""
    if not os.path.exists(path):
        path = shutil.which("wasmtime") or path
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        version = ""
    if WASMTIME_VERSION not in version:
        sys.exit(f"{path} is {version!r}, not wasmtime {WASMTIME_VERSION}; run ./scripts/test once to install it")
    return path, version
