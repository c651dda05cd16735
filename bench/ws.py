"""Benchmark: jacc serve against the bare Starlette stack, side by side, same client.

Starts `jacc serve bench/app.jac` and `bench/bare_app.py` on free loopback ports
and drives both with the load client of bench/loadclient.py (raw frames, several
client processes, so that the server is what runs out, not the client). The
figure that compares the two servers is the server's CPU per message, read from
/proc while the clients keep it busy:

1. one connection × N sequential round trips: msg/s, p50, p99, server CPU per message;
2. 50 connections × N/10 round trips each, concurrently, from several processes;
3. 100 listeners of a broadcast walker while one of them sends M messages, one at
   a time: deliveries/s, server CPU per broadcast;
4. memory: server RSS before, with 1,000 idle connections (KB per connection), and
   after they close.

Then the cost of the metrics (docs/operations.md#metrics), two ways:

- end to end: two `jacc serve` processes, one with `[server] metrics = false`,
  measured in turns on the server CPU per message of scenarios 1 and 3 (the
  median and the best of the rounds: on a shared machine the median moves by
  ±10 % from one run to the next, the best much less);
- the calls the metrics add on the hot path, timed in this process (what a
  round trip and a broadcast to 100 add with metrics on, over off), as a share
  of the server CPU per message measured above.

The servers run on one core and the bench with its client processes on the others
(`--no-pin`: wherever the OS puts them).

    python bench/ws.py [--round-trips 20000] [--broadcasts 300] [--client-processes 2]
                       [--skip-idle] [--rounds 5] [--metrics-only] [--no-metrics-cost]
                       [--no-pin]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import timeit
from contextlib import contextmanager
from pathlib import Path

import loadclient
from processes import app_folder, free_port, wait_until_listening

BENCH = Path(__file__).resolve().parent


def cores() -> tuple[set[int], set[int]] | None:
    """(the servers' core, the clients' cores) when this machine can pin them, else None.

    Unpinned, whether a client and the server it talks to share a core changes the
    server's CPU per round trip by ±20 % from one run to the next (a wake-up on
    another core costs more than one on the same); pinned, both servers always
    pay the same (docs/performance.md, "How it is measured").
    """
    if not hasattr(os, "sched_getaffinity"):
        return None
    available = sorted(os.sched_getaffinity(0))
    if len(available) < 2:
        return None
    return {available[0]}, set(available[1:])


@contextmanager
def server(command: list[str], port: int, cwd: Path, core: set[int] | None = None,
           **extra_env: str):
    env = dict(os.environ, JACC_JWT_SECRET="bench-secret-" + "x" * 40, **extra_env)
    # Set before the server starts: every thread it makes inherits the core.
    pin = (lambda: os.sched_setaffinity(0, core)) if core else None
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, preexec_fn=pin)
    try:
        wait_until_listening(port, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def scenarios(args: argparse.Namespace) -> dict:
    """Each scenario of the comparison: (port, pid) -> its figures."""
    processes = args.client_processes
    return {
        "1 connection": lambda port, pid: loadclient.round_trips(
            port, pid, connections=1, count=args.round_trips, processes=1).figures(),
        "50 connections": lambda port, pid: loadclient.round_trips(
            port, pid, connections=50, count=max(1, args.round_trips // 10),
            processes=processes).figures(),
        "broadcast to 100": lambda port, pid: loadclient.broadcast(
            port, pid, listeners=100, messages=args.broadcasts,
            processes=processes).figures("deliveries/s"),
    }


def compare(sides: dict[str, tuple[int, int]], args: argparse.Namespace) -> dict:
    """Every scenario on every side, `rounds` times in turns; the median of each figure.

    On a shared machine one run moves by ±20 % from the next: the sides take turns
    (each going first every other round), so a drift in load falls on both.
    """
    # Idle memory first, on servers that have served nothing yet: after the rounds,
    # what the load left free is reused, and a server looks lighter than it is.
    idle = {name: loadclient.idle(port, pid, 1000) for name, (port, pid) in sides.items()
            if not args.skip_idle}
    runs: dict[str, dict[str, list[dict]]] = {name: {} for name in sides}
    for turn in range(args.rounds):
        order = list(sides.items())
        for scenario, run in scenarios(args).items():
            for name, (port, pid) in (order if turn % 2 == 0 else order[::-1]):
                runs[name].setdefault(scenario, []).append(run(port, pid))
    results = {name: {scenario: {key: statistics.median(r[key] for r in rounds)
                                 for key in rounds[0]}
                      for scenario, rounds in figures.items()}
               for name, figures in runs.items()}
    for name, figures in idle.items():
        results[name]["1,000 idle connections"] = figures
    return results


def print_table(jacc: dict, bare: dict, rounds: int) -> None:
    print(f"jacc serve vs bare Starlette/uvicorn: the same client, the median of {rounds} rounds "
          "in turns\n(idle memory: one measurement each, on the fresh servers, before the rounds)")
    for scenario, figures in jacc.items():
        print(f"\n{scenario}")
        print(f"  {'':22}{'jacc':>12}{'bare':>12}{'jacc/bare':>11}")
        for key, value in figures.items():
            other = bare[scenario][key]
            ratio = value / other if other else float("nan")
            print(f"  {key:22}{value:>12.2f}{other:>12.2f}{ratio:>10.2f}x")


def metrics_cost(sides: dict[str, tuple[int, int]], args: argparse.Namespace) -> dict:
    """Server CPU per message with and without metrics, measured in turns, `rounds` times."""
    runs: dict[str, dict[str, list[float]]] = {name: {"round trip": [], "broadcast x100": []}
                                               for name in sides}
    for turn in range(args.rounds):
        # Each side goes first every other round: the machine's load drifts.
        order = list(sides.items())
        for name, (port, pid) in (order if turn % 2 == 0 else order[::-1]):
            trips = loadclient.round_trips(port, pid, connections=1, count=args.round_trips,
                                           processes=1)
            runs[name]["round trip"].append(trips.server_cpu / trips.messages * 1e6)
            sent = loadclient.broadcast(port, pid, listeners=100, messages=args.broadcasts,
                                        processes=args.client_processes)
            runs[name]["broadcast x100"].append(sent.server_cpu / args.broadcasts * 1e6)
    return {name: {key: (statistics.median(values), min(values)) for key, values in figures.items()}
            for name, figures in runs.items()}


def hot_path_cost(number: int = 100_000) -> dict[str, float]:
    """µs that the metrics' calls add per message (on minus off), timed in this process."""
    from jacc_runtime.server.metrics import Metrics, NoMetrics

    def added(scenario) -> float:
        on, off = (min(timeit.repeat(scenario(m), number=number, repeat=5)) / number * 1e6
                   for m in (Metrics(), NoMetrics()))
        return on - off

    def round_trip(metrics):
        walker = metrics.walker("EchoMessage")

        def once() -> None:  # what a session and its connection call per round trip
            walker.frame_in()
            walker.ran(0.00004)
            walker.frame_out()

        return once

    def broadcast(metrics):
        walker = metrics.walker("ChatRoom")
        deliver = metrics.timed_deliver(lambda channel, frame: None)
        publish = metrics.timed_publish(_published)

        def once() -> None:  # per broadcast to 100: the sender's, the fan-out, 100 frames out
            walker.frame_in()
            walker.ran(0.00004)
            deliver("ChatRoom", "frame")
            for _ in range(100):
                walker.frame_out()
            coroutine = publish("ChatRoom", "frame")
            try:
                coroutine.send(None)
            except StopIteration:
                pass

        return once

    return {"round trip": added(round_trip), "broadcast x100": added(broadcast)}


async def _published(channel: str, frame: str) -> None:
    return None


def print_metrics_cost(cost: dict, rounds: int, added: dict[str, float]) -> None:
    on, off = cost["metrics on"], cost["metrics off"]
    print(f"\nmetrics' cost: server CPU per message, {rounds} rounds in turns")
    print(f"  {'':24}{'on':>9}{'off':>9}{'cost':>8}   {'best on':>8}{'best off':>9}{'cost':>8}")
    for key in on:
        (median_on, best_on), (median_off, best_off) = on[key], off[key]
        print(f"  {key + ' µs/msg':24}{median_on:>9.1f}{median_off:>9.1f}"
              f"{(median_on - median_off) / median_on * 100:>7.1f}%   {best_on:>8.1f}"
              f"{best_off:>9.1f}{(best_on - best_off) / best_on * 100:>7.1f}%")
    print("\nthe calls the metrics add, timed in this process (on minus off)")
    for key, micros in added.items():
        share = micros / off[key][1] * 100
        print(f"  {key:24}{micros:>8.2f} µs/msg  = {share:.2f}% of the best server CPU per message")


def jacc_command(port: int) -> list[str]:
    return [sys.executable, "-m", "jacc", "serve", "app.jac", "--port", str(port)]


def bare_command(port: int) -> list[str]:
    return [sys.executable, str(BENCH / "bare_app.py"), str(port)]


# What issue 14 asks of jacc against the bare app in the same run (README, "Performance").
TARGETS = [
    ("1 connection", "cpu µs/msg", "jacc/bare", 0.8),
    ("50 connections", "cpu µs/msg", "jacc/bare", 0.8),
    ("broadcast to 100", "deliveries/s", "bare/jacc", 1.0),
    ("1,000 idle connections", "KB per idle conn", "jacc", 16.0),
]


def print_targets(jacc: dict, bare: dict) -> None:
    print("\ntargets")
    for scenario, key, measure_, bound in TARGETS:
        if scenario not in jacc:
            continue
        ours, theirs = jacc[scenario][key], bare[scenario][key]
        value = {"jacc/bare": ours / theirs, "bare/jacc": theirs / ours, "jacc": ours}[measure_]
        verdict = "met" if value <= bound else "MISSED"
        print(f"  {scenario + ', ' + key:42} {measure_} = {value:6.2f}  (at most {bound:g}): {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--round-trips", type=int, default=20000)
    parser.add_argument("--broadcasts", type=int, default=300)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--metrics-only", action="store_true",
                        help="only the cost of the metrics, not the comparison with bare")
    parser.add_argument("--no-metrics-cost", action="store_true",
                        help="only the comparison with bare, not the cost of the metrics")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the OS place servers and clients on any core")
    args = parser.parse_args()

    placement = None if args.no_pin else cores()
    server_core = None
    if placement is not None:
        server_core, client_cores = placement
        os.sched_setaffinity(0, client_cores)  # the client processes fork from here
        print(f"servers on core {min(server_core)}, clients on cores "
              f"{', '.join(map(str, sorted(client_cores)))}\n")

    results = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        app_folder(folder)
        if not args.metrics_only:
            jacc_port, bare_port = free_port(), free_port()
            with server(jacc_command(jacc_port), jacc_port, folder, server_core) as jacc, \
                    server(bare_command(bare_port), bare_port, folder, server_core) as bare:
                results = compare({"jacc": (jacc_port, jacc.pid),
                                   "bare": (bare_port, bare.pid)}, args)
            print_table(results["jacc"], results["bare"], args.rounds)
            print_targets(results["jacc"], results["bare"])
        if args.no_metrics_cost:
            return
        on_port, off_port = free_port(), free_port()
        with server(jacc_command(on_port), on_port, folder, server_core) as on, \
                server(jacc_command(off_port), off_port, folder, server_core,
                       JACC_SERVER_METRICS="false") as off:
            cost = metrics_cost({"metrics on": (on_port, on.pid),
                                 "metrics off": (off_port, off.pid)}, args)
        print_metrics_cost(cost, args.rounds, hot_path_cost())


if __name__ == "__main__":
    main()
