"""Helpers shared by benchmarks/run-smtp-peers and benchmarks/run-http-peers (stdlib only).

The options both runners take, starting and stopping the local peers, running one benchmark
client and reading its JSON line, collecting the runs and their medians, and the context lines,
tables and footer every report carries.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import resource
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

PEERS = Path(__file__).resolve().parent
ROOT = PEERS.parent.parent

BUILD_HINT = (
    "cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo && "
    "cmake --build build -j2 --target smtp_bench http_bench"
)


class Placement:
    """Which CPUs the server and the benchmark clients run on.

    On a small virtual machine, a request that has to wake a process sleeping on another CPU
    costs that machine's inter-processor wake-up, which is several times the client's own work
    at one request in flight, and the scheduler decides per run whether that happens. Pinning
    makes every client, ours and the peers alike, run under the same rule in every run:
      split   the server on the first allowed CPU, every client on the others (default)
      shared  the server and every client on the first allowed CPU
      none    left to the scheduler
    """

    MODES = ("split", "shared", "none")

    def __init__(self, mode: str):
        cpus = sorted(os.sched_getaffinity(0))
        if mode == "split" and len(cpus) < 2:
            log("only one CPU is allowed here: running with --placement shared instead of split")
            mode = "shared"
        self.mode = mode
        first, rest = {cpus[0]}, set(cpus[1:])
        self.server: set[int] | None = None if mode == "none" else first
        self.client: set[int] | None = {"split": rest, "shared": first}.get(mode)

    def describe(self) -> str:
        def names(cpus: set[int]) -> str:
            return ("CPU " if len(cpus) == 1 else "CPUs ") + ",".join(map(str, sorted(cpus)))

        if self.mode == "none":
            return "none (the scheduler places server and clients)"
        if self.mode == "shared":
            return f"shared (server and clients on {names(self.server)})"
        return f"split (server on {names(self.server)}, each client on {names(self.client)})"

    @staticmethod
    def _pin(cpus: set[int] | None) -> Callable[[], None] | None:
        """A preexec_fn that moves the child onto `cpus`, or None to leave it be."""
        return None if cpus is None else (lambda: os.sched_setaffinity(0, cpus))

    def pin_server(self) -> Callable[[], None] | None:
        return self._pin(self.server)

    def pin_client(self) -> Callable[[], None] | None:
        return self._pin(self.client)


# Set by parse_args from --placement; Peer.start and run_captured apply it.
placement = Placement("none")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def die(message: str) -> None:
    log(f"error: {message}")
    sys.exit(1)


def exit_on_signals() -> None:
    """Makes SIGTERM and SIGINT (even if inherited as ignored) unwind through `finally` blocks,
    which stop the peers."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    signal.signal(signal.SIGINT, signal.default_int_handler)


def int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected comma-separated integers, got '{text}'") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"expected comma-separated positive integers, got '{text}'")
    return values


def name_list(text: str, allowed: list[str], what: str) -> list[str]:
    names = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [n for n in names if n not in allowed]
    if unknown or not names:
        die(f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}")
    return names


def parse_args(
    doc: str,
    clients: list[str],
    raw_help: str,
    own_options: Callable[[argparse.ArgumentParser], None],
) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """Parses the command line of a runner whose docstring is `doc` and whose clients are
    `clients`: first paragraph as description, the rest as epilog, the runner's own options
    (`own_options` adds them, so that --help lists them first), then the options every runner
    takes. Unknown clients are fatal; args.clients comes back as a list. Returns the parser too,
    for the runner's own checks."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(doc.split("\n\n")[1:]),
    )
    own_options(p)
    p.add_argument("--clients", default=",".join(clients),
                   help=f"comma-separated, from {','.join(clients)} (default all)")
    p.add_argument("--build-dir", default="build", help="CMake build directory (default build)")
    p.add_argument("--raw", metavar="FILE", help=raw_help)
    p.add_argument("--timeout", type=float, default=1800, help="seconds allowed per client run")
    p.add_argument("--no-install", action="store_true", help="skip benchmarks/peers/install")
    p.add_argument("--placement", choices=Placement.MODES, default="split",
                   help="CPUs for server and clients: split (default: server on one CPU, clients "
                        "on the others), shared (all on one CPU) or none (the scheduler's choice)")
    args = p.parse_args()
    args.clients = name_list(args.clients, clients, "client")
    global placement
    placement = Placement(args.placement)
    return p, args


def run_install() -> None:
    script = PEERS / "install"
    log(f"running {script.relative_to(ROOT)} (skip with --no-install)")
    if subprocess.run([str(script)]).returncode != 0:
        die(f"{script.relative_to(ROOT)} failed")


def require_node_modules() -> None:
    if not (PEERS / "node_modules").is_dir():
        die(f"{PEERS.relative_to(ROOT)}/node_modules is missing; run benchmarks/peers/install")


def require_binary(build_dir: str, name: str) -> Path:
    path = (ROOT / build_dir / "benchmarks" / name).resolve()
    if not os.access(path, os.X_OK):
        die(f"{path} not found; build it first (from {ROOT}):\n  {BUILD_HINT}")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Peer:
    """A local server started in its own session, stopped (and reaped) by stop()."""

    def __init__(self, name: str, argv: list[str], port: int, log_path: Path):
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                preexec_fn=placement.pin_server(),
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                die(f"{self.name} exited with status {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        die(f"{self.name} did not accept connections on 127.0.0.1:{self.port}:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


class RawLog:
    """Appends every JSON line to the --raw file, if one was given."""

    def __init__(self, path: str | None):
        self.file = open(path, "a", encoding="utf-8") if path else None

    def write(self, record: dict) -> None:
        if self.file:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()


def run_captured(
    argv: list[str], timeout: float, env: dict | None = None
) -> subprocess.CompletedProcess | None:
    """Runs `argv` from the repository root with no input, on the clients' CPUs, its output
    captured as text; None when it ran past `timeout` seconds (it is killed then)."""
    try:
        return subprocess.run(
            argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
            timeout=timeout, preexec_fn=placement.pin_client(),
        )
    except subprocess.TimeoutExpired:
        return None


def run_client(argv: list[str], timeout: float) -> tuple[dict | None, str]:
    """Runs one benchmark client; returns (its JSON line or None on failure, error text)."""
    done = run_captured(argv, timeout)
    if done is None:
        return None, f"timed out after {timeout:.0f} s: {shlex.join(argv)}"
    record = None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                pass
            break
    if done.returncode != 0 or record is None:
        why = f"exit status {done.returncode}" if done.returncode else "no JSON line on stdout"
        err = "\n".join(done.stderr.strip().splitlines()[-10:])
        return record, f"{why}: {shlex.join(argv)}\n{err}".rstrip()
    return record, ""


class Results:
    """The runs of one report: every JSON line goes to the --raw file (if given), failed runs are
    kept apart (their errors for the footer), the others grouped by key for the medians."""

    def __init__(self, raw_path: str | None):
        self.raw = RawLog(raw_path)
        self.runs: dict[tuple, list[dict]] = {}
        self.failures: list[str] = []

    def add(self, key: tuple, tag: str, record: dict | None, err: str) -> bool:
        """Files one run's outcome; says so on stderr when it failed. True when it counts."""
        if record:
            self.raw.write(record)
        if err:
            self.failures.append(err)
            log(f"{tag} FAILED: {err}")
            return False
        self.runs.setdefault(key, []).append(record)
        return True

    def median(self, key: tuple, field: str) -> float | None:
        return median([rec[field] for rec in self.runs.get(key, []) if field in rec])

    def close(self) -> None:
        self.raw.close()


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def rate(x: float | None) -> str:
    return "–" if x is None else f"{x:,.0f}"


def micros(x: float | None) -> str:
    return "–" if x is None else f"{x:,.1f}"


def times(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{a / b:.2f}×"


def percent(a: float | None, b: float | None) -> str:
    return "–" if a is None or not b else f"{100 * a / b:.1f}%"


def loadavg() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def nproc() -> int:
    return len(os.sched_getaffinity(0))


def command_line() -> str:
    argv0 = Path(sys.argv[0]).resolve()
    try:
        argv0 = argv0.relative_to(ROOT)
    except ValueError:
        pass
    return shlex.join([str(argv0), *sys.argv[1:]])


def print_context(load_before: str) -> None:
    """The lines every report carries after its title: machine load, CPUs and how it was run."""
    print(f"- load average before the run (1 / 5 / 15 min): {load_before}; after: {loadavg()}")
    print(f"- nproc: {nproc()}; placement: {placement.describe()}")
    print(f"- command: `{command_line()}`")


def print_table(head: list[str], rows: list[list[str]]) -> None:
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for row in rows:
        print("| " + " | ".join(row) + " |")


def finish(failures: list[str]) -> int:
    """Ends the report; the exit status is 1 when any run failed."""
    if failures:
        print()
        print(f"{len(failures)} run(s) failed and are left out of the medians; see stderr.")
        return 1
    return 0


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def npm_version(package: str) -> str:
    try:
        with open(PEERS / "node_modules" / package / "package.json", encoding="utf-8") as f:
            return json.load(f)["version"]
    except (OSError, KeyError, json.JSONDecodeError):
        return "?"


def tool_version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    text = (done.stdout + done.stderr).strip().splitlines()
    return text[0] if text else "?"


def dpkg_version(package: str) -> str:
    return tool_version(["dpkg-query", "-W", "-f=${Version}", package])
