#!/usr/bin/env python3
"""Sending from Python over SMTP: the mailers binding (engine and SMTP
transport) against the standard library's smtplib, both to Postfix's
smtp-sink on 127.0.0.1, each client in a process of its own.

    PYTHONPATH=build/bindings/python /usr/bin/python3 benchmarks/python_smtp.py \\
        [--messages M] [--connections 1,4] [--rounds 3]

mailers: one AsyncEngine (SQLite ledger, a mailbox, a pool), the SMTP
transport with max_connections=N, up to 512 sends in flight from one asyncio
loop. smtplib: N threads, each with one smtplib.SMTP connection sending its
share in turn (smtplib neither pipelines nor pools), each message built
with email.message.EmailMessage. Both send the same message: a subject and
1 KiB of text to prospect<i>@example.com. CPU is the client process's user
+ system time (every thread).
"""

import argparse
import asyncio
import email.message
import json
import os
import pathlib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

TEXT = "Hi,\n\n" + "x" * 1018 + "\n"


def cpu():
    t = os.times()
    return t.user + t.system


def client_mailers(port, connections, messages, folder):
    import mailers

    async def main():
        async with mailers.AsyncEngine(mailers.SQLite(str(folder / "bench.db"))) as eng:
            await eng.add_provider(
                "sink", f"smtp://127.0.0.1:{port}?tls=none&max_connections={connections}")
            await eng.upsert_mailbox(mailers.Mailbox("rep", "Rep <rep@brand.com>", "sink"))
            await eng.upsert_pool(mailers.Pool("out", ["rep"]))
            await eng.send("warmup@example.com", pool="out", subject="warm-up", text=TEXT)
            c0, t0 = cpu(), time.perf_counter()
            window = 512
            for base in range(0, messages, window):
                await asyncio.gather(*(
                    eng.send(f"prospect{i}@example.com", pool="out", subject="Quick question",
                             text=TEXT) for i in range(base, min(base + window, messages))))
            return time.perf_counter() - t0, cpu() - c0

    return asyncio.run(main())


def client_smtplib(port, connections, messages, folder):
    import smtplib

    def worker(n, out):
        with smtplib.SMTP("127.0.0.1", port) as s:
            s.ehlo("client.example")
            for i in range(n, messages, connections):
                msg = email.message.EmailMessage()
                msg["From"] = "Rep <rep@brand.com>"
                msg["To"] = f"prospect{i}@example.com"
                msg["Subject"] = "Quick question"
                msg["Message-ID"] = email.utils.make_msgid(domain="brand.com")
                msg["Date"] = email.utils.formatdate()
                msg.set_content(TEXT)
                s.send_message(msg)
        out.append(n)

    import email.utils
    done: list = []
    c0, t0 = cpu(), time.perf_counter()
    threads = [threading.Thread(target=worker, args=(n, done)) for n in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(done) == connections
    return time.perf_counter() - t0, cpu() - c0


def child(o):
    folder = pathlib.Path(tempfile.mkdtemp(prefix="mailers-pysmtp-"))
    fn = client_mailers if o.client == "mailers" else client_smtplib
    dt, dc = fn(o.port, o.connections, o.messages, folder)
    print(json.dumps({"msgs_per_s": o.messages / dt, "cpu_us": dc / o.messages * 1e6}))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=5000)
    ap.add_argument("--connections", default="1,4")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--client")
    ap.add_argument("--port", type=int)
    o = ap.parse_args()
    if o.client:
        o.connections = int(o.connections)
        return child(o)

    port = free_port()
    sink = subprocess.Popen(["/usr/sbin/smtp-sink", *(["-u", "nobody"] if os.geteuid() == 0
                                                      else []), f"127.0.0.1:{port}", "1024"])
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.05)
        print(f"\nsmtp-sink on 127.0.0.1:{port}, {o.messages} messages, median of {o.rounds} "
              f"rounds (load average {os.getloadavg()[0]:.2f})\n")
        print("| connections | client | msg/s | µs CPU/msg | mailers vs smtplib |")
        print("|---:|---|---:|---:|---|")
        for n in [int(x) for x in o.connections.split(",")]:
            med = {}
            for client in ("mailers", "smtplib"):
                runs = []
                for _ in range(o.rounds):
                    out = subprocess.run([sys.executable, __file__, "--client", client, "--port",
                                          str(port), "--connections", str(n), "--messages",
                                          str(o.messages)], capture_output=True, text=True,
                                         check=True, env=dict(os.environ)).stdout
                    runs.append(json.loads(out.strip().splitlines()[-1]))
                med[client] = (statistics.median(r["msgs_per_s"] for r in runs),
                               statistics.median(r["cpu_us"] for r in runs))
            for client, (rate, us) in med.items():
                vs = ""
                if client == "mailers":
                    vs = (f"{rate / med['smtplib'][0]:.1f}x the rate, "
                          f"{us / med['smtplib'][1]:.2f}x the CPU")
                print(f"| {n} | {client} | {rate:,.0f} | {us:.0f} | {vs} |")
    finally:
        sink.terminate()
        sink.wait()


if __name__ == "__main__":
    main()
