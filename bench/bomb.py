#!/usr/bin/env python3
"""Writes a component that is cheap to upload and costly to optimize: one
core module (never instantiated, still compiled) with one function of
BODY_BYTES whose 50 000 i64 locals are all live across a loop. Winch
compiles it in one pass; Cranelift's time grows much faster than its size
(bench/README.md, "Compile bombs"). The same function as the test
`runtime::an_optimizing_compile_past_its_budget_is_stopped_...`, without
the hello component around it (it does not need to serve).

Usage: python3 bench/bomb.py BODY_BYTES > bomb.wasm
"""
import sys

LOCALS = 50_000


def leb(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n == 0:
            out.append(byte)
            return bytes(out)
        out.append(byte | 0x80)


def section(section_id, body):
    return bytes([section_id]) + leb(len(body)) + body


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    body_bytes = int(sys.argv[1])
    code = bytearray(leb(1) + leb(LOCALS) + b"\x7e" + b"\x03\x40")
    random = 0x5EED

    def local():
        nonlocal random
        random = (random * 6364136223846793005 + 1) % (1 << 64)
        return (random >> 33) % LOCALS

    while len(code) < body_bytes:
        a, b, c = local(), local(), local()
        code += b"\x20" + leb(a) + b"\x20" + leb(b) + b"\x7c" + b"\x21" + leb(c)
    code += b"\x20\x00\xa7\x0d\x00\x0b\x0b"
    module = b"\0asm\x01\0\0\0"
    module += section(1, b"\x01\x60\x00\x00")
    module += section(3, b"\x01\x00")
    module += section(10, b"\x01" + leb(len(code)) + bytes(code))
    sys.stdout.buffer.write(b"\0asm\x0d\x00\x01\x00" + section(1, module))


if __name__ == "__main__":
    main()
