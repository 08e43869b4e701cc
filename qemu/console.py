#!/usr/bin/env python3
"""Drives the appliance's serial console as a person at the keyboard would.

Usage: console.py SOCKET STEP...

QEMU serves the console on a unix socket (qemu/boot.sh, SMS_SERIAL_SOCKET).
Each STEP is `expect:TEXT` (wait up to the timeout for TEXT in what the
console prints after the previous match), `send:TEXT` (type TEXT and
Enter) or `secret:TEXT` (the same, not echoed in this script's log). What
the console printed goes to stderr; the exit status is 1 with the step that
was not met.
"""
import os
import socket
import sys
import time

TIMEOUT = float(os.environ.get("SMS_CONSOLE_TIMEOUT", "180"))


def main():
    path, steps = sys.argv[1], sys.argv[2:]
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.settimeout(1.0)
    seen = ""
    poke = True
    for step in steps:
        kind, _, text = step.partition(":")
        if kind in ("send", "secret"):
            shown = text if kind == "send" else "*" * len(text)
            sys.stderr.write(f"\n[console.py typed: {shown}]\n")
            for ch in text + "\r":
                s.sendall(ch.encode())
                time.sleep(0.02)  # a serial line, not a paste
            continue
        if kind != "expect":
            sys.exit(f"console.py: unknown step {step!r}")
        deadline = time.monotonic() + TIMEOUT
        while text not in seen:
            if time.monotonic() > deadline:
                sys.stderr.write(f"\n[console.py: no {text!r} within {TIMEOUT:.0f} s]\n")
                sys.exit(1)
            try:
                got = s.recv(4096)
            except socket.timeout:
                # A getty waiting for its first key shows nothing yet.
                if poke:
                    s.sendall(b"\r")
                continue
            if not got:
                sys.stderr.write("\n[console.py: the console closed]\n")
                sys.exit(1)
            out = got.decode("utf-8", "replace")
            sys.stderr.write(out)
            seen += out
        seen = seen[seen.index(text) + len(text):]
        poke = False
    s.close()


if __name__ == "__main__":
    main()
