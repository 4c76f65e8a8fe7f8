#!/usr/bin/env python3
"""The TCP ports a process tree listens on, from /proc alone (no ss/netstat needed).

Usage: listening_ports.py PID...   prints one line per listening socket of those processes and
their descendants: "ADDRESS:PORT PID COMMAND", ADDRESS 0.0.0.0 / :: for every interface.
"""
import os
import socket
import struct
import sys


def children(pid):
    out = []
    for task in os.listdir(f"/proc/{pid}/task") if os.path.isdir(f"/proc/{pid}/task") else []:
        try:
            with open(f"/proc/{pid}/task/{task}/children") as f:
                out += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def tree(roots):
    seen, todo = set(), list(roots)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo += children(p)
    return seen


def socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inodes.add(int(link[8:-1]))
    except OSError:
        pass
    return inodes


def listeners():
    """inode -> 'address:port' for every TCP socket in state LISTEN (0A)."""
    out = {}
    for path, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = open(path).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] != "0A":
                continue
            addr_hex, port_hex = cols[1].split(":")
            raw = bytes.fromhex(addr_hex)
            # /proc prints each 32-bit word in host order.
            raw = b"".join(struct.pack("<I", struct.unpack(">I", raw[i:i + 4])[0]) for i in range(0, len(raw), 4))
            addr = socket.inet_ntop(family, raw)
            out[int(cols[9])] = f"{addr}:{int(port_hex, 16)}"
    return out


def main():
    socks = listeners()
    for pid in sorted(tree(int(a) for a in sys.argv[1:])):
        try:
            comm = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        for inode in socket_inodes(pid):
            if inode in socks:
                print(f"{socks[inode]} {pid} {comm}")


if __name__ == "__main__":
    main()
