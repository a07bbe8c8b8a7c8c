#!/usr/bin/env python3
"""OPC UA into twind: monitored items at a sampling interval, twind's CPU, and the time from a
value's source timestamp to its arrival in `twin watch`.

    python3 Benchmarks/opcua_bench.py [--items 1000] [--seconds 20] [--sampling 100ms] [--build release]
                                      [--load-server PATH]

Starts the asyncua test server (Tests/Python/opcua_server.py --items N: N Doubles written every
100 ms) and a twind reading all of them (one device per 10 items), both on loopback, waits until
every item is monitored, then measures for --seconds: twind's CPU (utime+stime from /proc) as a
share of one core, readings stored per second, and per update of one device the delay from the
value's source timestamp (set by the server when it writes) to the moment `twin watch -o json`
prints it. That delay includes the server's sampling and publishing (up to one publishing
interval), not only twind's part. The asyncua server is pure Python: its own CPU is printed too,
since it, not twind, bounds how many items change per second.
"""
import argparse, json, os, shutil, socket, subprocess, sys, tempfile, threading, time
from datetime import datetime

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--sampling", default="100ms")
    ap.add_argument("--build", default="release")
    ap.add_argument("--load-server", help="an opcua_load_server binary (open62541) instead of the asyncua server")
    ap.add_argument("--change-interval", help="with --load-server: how often each item changes (default: the sampling interval)")
    a = ap.parse_args()
    bins = os.path.join(root, ".build", a.build)
    tmp = tempfile.mkdtemp(prefix="opcua-bench-")
    procs = []
    try:
        port = free_port()
        if a.load_server:
            every = a.change_interval or a.sampling
            interval_ms = every[:-2] if every.endswith("ms") else str(float(every[:-1]) * 1000)
            command = [a.load_server, str(port), str(a.items), interval_ms]
            url, path = f"opc.tcp://127.0.0.1:{port}/", "1:Bulk/1:Item{}"
        else:
            command = [sys.executable, os.path.join(root, "Tests/Python/opcua_server.py"), str(port), "--items", str(a.items)]
            url, path = f"opc.tcp://127.0.0.1:{port}/twin/", "2:Plant/2:Bulk/2:Item{}"
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(server)
        while True:
            line = server.stdout.readline()
            if not line:
                sys.exit("the OPC UA server did not start")
            if line.startswith("ready"):
                break
        threading.Thread(target=lambda: server.stdout.read(), daemon=True).start()  # keep its pipe drained
        lines = ["endpoints:", f"  - url: {url}", "    name: bench", f"    sampling_interval: {a.sampling}", "    nodes:"]
        for i in range(a.items):
            lines.append(f"      - {{path: '{path.format(i)}', device: bulk-{i // 10}, sensor: v{i % 10}}}")
        with open(f"{tmp}/opcua.yaml", "w") as f:
            f.write("\n".join(lines) + "\n")
        tport = free_port()
        env = dict(os.environ, TWIND_ADMIN_PASSWORD="bench-admin-password", XDG_CONFIG_HOME=f"{tmp}/config")
        twind = subprocess.Popen([f"{bins}/twind", "--data-dir", f"{tmp}/data", "--listen", f"127.0.0.1:{tport}", "--http-listen", "off",
                                  "--simulator", "off", "--opcua-config", f"{tmp}/opcua.yaml"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        procs.append(twind)
        twin = [f"{bins}/twin", "--server", f"127.0.0.1:{tport}"]
        for _ in range(100):
            if subprocess.run(twin + ["login", "--user", "admin", "--password-stdin"], input="bench-admin-password\n", text=True,
                              env=env, capture_output=True).returncode == 0:
                break
            time.sleep(0.2)

        def gateway():
            out = subprocess.run(twin + ["gateways", "-o", "json"], env=env, capture_output=True, text=True).stdout
            return json.loads(out).get("opcua_connections", [{}])[0] if out.strip() else {}

        deadline = time.time() + 300
        while time.time() < deadline and int(gateway().get("monitored_items", 0)) < a.items:
            time.sleep(0.5)
        g0 = gateway()
        if int(g0.get("monitored_items", 0)) < a.items:
            sys.exit(f"not every item monitored: {g0}")
        time.sleep(2)
        watch = subprocess.Popen(twin + ["watch", "--device", "bulk-0", "-o", "json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        procs.append(watch)
        g0, c0, s0, t0 = gateway(), cpu_seconds(twind.pid), cpu_seconds(server.pid), time.time()
        delays = []
        while time.time() - t0 < a.seconds:
            line = watch.stdout.readline()
            arrived = time.time()
            if not line:
                break
            m = json.loads(line)
            if "time" in m:
                sent = datetime.fromisoformat(m["time"].replace("Z", "+00:00")).timestamp()
                delays.append((arrived - sent) * 1000)
        g1, c1, s1, t1 = gateway(), cpu_seconds(twind.pid), cpu_seconds(server.pid), time.time()
        span = t1 - t0
        readings = (int(g1.get("readings", 0)) - int(g0.get("readings", 0))) / span
        delays = sorted(delays[5:]) or [float("nan")]
        pct = lambda p: delays[min(len(delays) - 1, int(p * len(delays)))]
        print(f"items {a.items} at {a.sampling}: twind {100 * (c1 - c0) / span:.1f} % of a core, {'open62541' if a.load_server else 'asyncua'} server {100 * (s1 - s0) / span:.1f} %,"
              f" {readings:,.0f} readings/s stored ({readings / a.items:.1f} per item per s),"
              f" source time → twin watch p50 {pct(0.5):.0f} ms p99 {pct(0.99):.0f} ms over {len(delays)} updates")
    finally:
        for p in reversed(procs):
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


main()
