#!/usr/bin/env python3
"""twind's store beside the time-series databases a plant might pick instead, on the same data.

    python3 Benchmarks/tsdb_compare.py [--series 20] [--days 30] [--step 5] [--batch 10000] [--build release]

The same data for all: --series series × --days at one reading every --step seconds (20 × 30 d
× 5 s = 10.4 M points), 2-decimal sensor-like values, serialized before the clock starts, in
batches of --batch points (time-major: every series at each timestamp). Each system gets the
first half of the series over one stream/connection, then the second half over two at once,
then, once it has flushed (VictoriaMetrics' force_flush; twind's next maintenance pass, which
compacts fresh chunks and computes their roll-ups), answers two queries 20 times each (client-side median): 24 h raw of one series, and 30
days of one series in 1 h buckets (mean). Its server CPU is the process's utime+stime over the
ingest, its size the whole data directory after a clean stop.

Installs nothing: twind comes from .build/<build> (swift build -c release); VictoriaMetrics and
InfluxDB are measured when `victoria-metrics` and `influxd` are on the PATH (Debian packages
victoria-metrics, influxdb), each started on loopback with its data in a temporary directory,
and left out of the table otherwise. Python needs grpcio and grpcio-tools (scripts/bootstrap).
"""
import argparse, http.client, json, math, os, random, shutil, signal, socket, statistics
import subprocess, sys, tempfile, threading, time, urllib.parse

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, twin_stubs  # noqa: E402


def dir_bytes(path):
    total = 0
    for d, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(d, f)).st_size
            except OSError:
                pass
    return total


def wait_port(port, deadline=60):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on {port}")


def median_ms(call, runs=20):
    call()  # warm
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


class Data:
    """The points, and their timestamps, time-major, split into the two halves of the series."""

    def __init__(self, series, days, step):
        self.series, self.step = series, step
        self.end = int(time.time()) // 3600 * 3600
        self.start = self.end - days * 86400
        self.times = list(range(self.start, self.end, step))
        rng = random.Random(7)
        self.values = []
        for s in range(series):
            base, amp, noise = 40 + 3 * s, 5 + s % 7, 0.3
            self.values.append([round(base + amp * math.sin(2 * math.pi * (t % 86400) / 86400) + rng.gauss(0, noise), 2) for t in self.times])

    def batches(self, series, size):
        """(series, time index) pairs in batches of `size` points, time-major."""
        out, cur = [], []
        for i in range(len(self.times)):
            for s in series:
                cur.append((s, i))
                if len(cur) == size:
                    out.append(cur)
                    cur = []
        if cur:
            out.append(cur)
        return out

    @property
    def points(self):
        return self.series * len(self.times)


class Twind:
    name = "twind (AES-GCM sealed)"
    durability = "fsynced SQLite commit (durability full)"

    def __init__(self, build, tmp):
        self.binary = os.path.join(root, ".build", build, "twind")
        self.dir = os.path.join(tmp, "twind")
        stubs = twin_stubs(os.path.join(tmp, "py"))
        self.types, self.twin, self.twin_grpc = stubs["types_pb2"], stubs["twin_pb2"], stubs["twin_pb2_grpc"]
        self.auth, self.auth_grpc = stubs["auth_pb2"], stubs["auth_pb2_grpc"]

    def serialize(self, data, batch):
        payloads = []
        for b in batch:
            req = self.twin.IngestRequest()
            for s, i in b:
                r = req.readings.add()
                r.device_id = f"series-{s}"
                r.sensor = "v"
                r.time.seconds = data.times[i]
                r.value = data.values[s][i]
            payloads.append(req.SerializeToString())
        return payloads

    def start(self, data):
        import grpc
        self.port = free_port()
        env = dict(os.environ, TWIND_ADMIN_PASSWORD="compare-admin-password")
        self.log = os.path.join(os.path.dirname(self.dir), "twind.log")
        self.proc = subprocess.Popen([self.binary, "--data-dir", self.dir, "--listen", f"127.0.0.1:{self.port}", "--http-listen", "off",
                                      "--simulator", "off", "--late-window", f"{(data.end - data.start) // 86400 + 2}d", "--durability", "full"],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "w"), env=env)
        wait_port(self.port)
        self.grpc = grpc
        self.channel = grpc.insecure_channel(f"127.0.0.1:{self.port}", options=[("grpc.max_receive_message_length", 64 << 20)])
        token = self.auth_grpc.AuthServiceStub(self.channel).Login(self.auth.LoginRequest(username="admin", password="compare-admin-password")).access_token
        self.meta = [("authorization", "Bearer " + token)]
        stub = self.twin_grpc.TwinServiceStub(self.channel)
        for s in range(data.series):
            d = self.twin.UpsertDeviceRequest()
            d.device.id, d.device.type = f"series-{s}", "meter"
            sensor = d.device.sensors.add()
            sensor.name, sensor.nominal_min, sensor.nominal_max = "v", 0, 200
            stub.UpsertDevice(d, metadata=self.meta)
        self.stub = stub

    def ingest(self, payloads):
        channel = self.grpc.insecure_channel(f"127.0.0.1:{self.port}")
        call = channel.stream_unary("/twin.v1.TwinService/Ingest", request_serializer=lambda b: b, response_deserializer=self.twin.IngestResponse.FromString)
        call(iter(payloads), metadata=self.meta)
        channel.close()

    def flush(self):
        """Waits for the store's next maintenance pass (once a minute), which compacts the fresh
        chunks and computes their roll-ups, as a flushed and compacted store would be queried."""
        with open(self.log) as f:
            seen = len(f.read())
        end = time.time() + 150
        while time.time() < end:
            with open(self.log) as f:
                if "store maintenance" in f.read()[seen:]:
                    return
            time.sleep(0.5)
        print("twind: no maintenance pass within 150 s; querying as it is", file=sys.stderr)

    def raw_24h(self, data):
        r = self.twin.GetHistoryRequest(device_id="series-0", sensors=["v"], columnar=True)
        r.__getattribute__("from").seconds = data.end - 86400
        r.to.seconds = data.end
        def call():
            n = sum(len(s.columns.values) for s in self.stub.GetHistory(r, metadata=self.meta).series)
            assert n == 86400 // data.step, n
        return call

    def buckets_30d(self, data):
        r = self.twin.GetHistoryRequest(device_id="series-0", sensors=["v"], columnar=True, aggregate=self.twin.AGGREGATE_MEAN)
        r.__getattribute__("from").seconds = data.start
        r.to.seconds = data.end
        r.step.seconds = 3600
        def call():
            self.stub.GetHistory(r, metadata=self.meta)
        return call

    def stop(self):
        self.channel.close()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(120)


class HTTPSystem:
    def post_all(self, path, payloads, content_type):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        for p in payloads:
            c.request("POST", path, body=p, headers={"Content-Type": content_type})
            r = c.getresponse()
            r.read()
            if r.status >= 300:
                raise SystemExit(f"{self.name}: {path} answered {r.status}")
        c.close()

    def get(self, path):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        c.request("GET", path)
        r = c.getresponse()
        body = r.read()
        c.close()
        if r.status >= 300:
            raise SystemExit(f"{self.name}: {path} answered {r.status}: {body[:200]}")
        return body

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        self.proc.wait(120)


class Victoria(HTTPSystem):
    name = "VictoriaMetrics"
    durability = "held in memory, written about 1 s later"

    def __init__(self, binary, tmp):
        self.binary, self.dir = binary, os.path.join(tmp, "victoria")

    def serialize(self, data, batch):
        payloads = []
        for b in batch:
            per = {}
            for s, i in b:
                per.setdefault(s, ([], []))
                per[s][0].append(data.values[s][i])
                per[s][1].append(data.times[i] * 1000)
            payloads.append("".join(json.dumps({"metric": {"__name__": "v", "series": str(s)}, "values": v, "timestamps": t}) + "\n"
                                    for s, (v, t) in per.items()).encode())
        return payloads

    def start(self, data):
        self.port = free_port()
        self.proc = subprocess.Popen([self.binary, f"-storageDataPath={self.dir}", f"-httpListenAddr=127.0.0.1:{self.port}", "-retentionPeriod=10y",
                                      "-search.disableCache"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def ingest(self, payloads):
        self.post_all("/api/v1/import", payloads, "application/json")

    def flush(self):
        self.get("/internal/force_flush")

    def raw_24h(self, data):
        q = urllib.parse.urlencode({"match[]": 'v{series="0"}', "start": data.end - 86400, "end": data.end - 1})
        def call():
            body = self.get("/api/v1/export?" + q)
            n = sum(len(json.loads(line)["values"]) for line in body.splitlines() if line)
            assert n == 86400 // data.step, n
        return call

    def buckets_30d(self, data):
        q = urllib.parse.urlencode({"query": 'avg_over_time(v{series="0"}[1h])', "start": data.start + 3600, "end": data.end, "step": "3600"})
        return lambda: self.get("/api/v1/query_range?" + q)


class Influx(HTTPSystem):
    name = "InfluxDB"
    durability = "WAL fsynced per request"

    def __init__(self, binary, tmp):
        self.binary, self.dir = binary, os.path.join(tmp, "influx")

    def serialize(self, data, batch):
        return ["".join(f"v,sid={s} value={data.values[s][i]} {data.times[i]}\n" for s, i in b).encode() for b in batch]

    def start(self, data):
        self.port, rpc = free_port(), free_port()
        os.makedirs(self.dir, exist_ok=True)
        config = os.path.join(self.dir, "influxdb.conf")
        with open(config, "w") as f:
            f.write(f'reporting-disabled = true\nbind-address = "127.0.0.1:{rpc}"\n[meta]\n  dir = "{self.dir}/meta"\n'
                    f'[data]\n  dir = "{self.dir}/data"\n  wal-dir = "{self.dir}/wal"\n  query-log-enabled = false\n'
                    f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n[monitor]\n  store-enabled = false\n')
        self.proc = subprocess.Popen([self.binary, "-config", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)
        c = http.client.HTTPConnection("127.0.0.1", self.port)
        c.request("POST", "/query?" + urllib.parse.urlencode({"q": "CREATE DATABASE bench"}))
        c.getresponse().read()
        c.close()

    def ingest(self, payloads):
        self.post_all("/write?db=bench&precision=s", payloads, "text/plain")

    def flush(self):
        pass

    def raw_24h(self, data):
        q = urllib.parse.urlencode({"db": "bench", "epoch": "ms", "q": f"SELECT value FROM v WHERE sid='0' AND time >= {data.end - 86400}s AND time < {data.end}s"})
        def call():
            body = json.loads(self.get("/query?" + q))
            n = len(body["results"][0]["series"][0]["values"])
            assert n == 86400 // data.step, n
        return call

    def buckets_30d(self, data):
        q = urllib.parse.urlencode({"db": "bench", "epoch": "ms", "q": f"SELECT mean(value) FROM v WHERE sid='0' AND time >= {data.start}s AND time < {data.end}s GROUP BY time(1h)"})
        return lambda: self.get("/query?" + q)


def measure(system, data, batch):
    first = list(range(data.series // 2))
    second = list(range(data.series // 2, data.series))
    one = system.serialize(data, data.batches(first, batch))
    halves = [system.serialize(data, data.batches(second[k::2], batch)) for k in range(2)]
    system.start(data)
    cpu0 = cpu_seconds(system.proc.pid)
    t = time.perf_counter()
    system.ingest(one)
    single = len(first) * len(data.times) / (time.perf_counter() - t)
    t = time.perf_counter()
    threads = [threading.Thread(target=system.ingest, args=(h,)) for h in halves]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    double = len(second) * len(data.times) / (time.perf_counter() - t)
    cpu = cpu_seconds(system.proc.pid) - cpu0
    system.flush()
    time.sleep(2)
    raw = median_ms(system.raw_24h(data))
    buckets = median_ms(system.buckets_30d(data))
    system.stop()
    size = dir_bytes(system.dir)
    return {"durability": system.durability, "one": single, "two": double, "cpu": cpu, "bpp": size / data.points, "raw": raw, "buckets": buckets}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--series", type=int, default=20)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--step", type=int, default=5)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--build", default="release")
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="tsdb-compare-")
    try:
        print(f"generating {a.series} series × {a.days} d at {a.step} s …", file=sys.stderr)
        data = Data(a.series, a.days, a.step)
        systems = [Twind(a.build, tmp)]
        for binary, cls in (("victoria-metrics", Victoria), ("influxd", Influx)):
            path = shutil.which(binary)
            if path:
                systems.append(cls(path, tmp))
            else:
                print(f"{binary} is not on the PATH: left out", file=sys.stderr)
        results = []
        for s in systems:
            print(f"measuring {s.name} …", file=sys.stderr)
            results.append((s.name, measure(s, data, a.batch)))
        cols = [n for n, _ in results]
        rows = [
            ("what an acknowledgement means", lambda r: r["durability"]),
            ("ingest, one stream / connection", lambda r: f"{r['one'] / 1000:,.0f}k points/s"),
            ("ingest, two streams / connections", lambda r: f"{r['two'] / 1000:,.0f}k points/s"),
            (f"server CPU for the {data.points / 1e6:.1f} M points", lambda r: f"{r['cpu']:.1f} s ({r['cpu'] / data.points * 1e6:.2f} µs/point)"),
            ("bytes per point on disk (whole data dir after a clean stop)", lambda r: f"{r['bpp']:.2f}"),
            (f"24 h raw of one series ({86400 // a.step:,} points), client median", lambda r: f"{r['raw']:.1f} ms"),
            (f"{a.days} days in 1 h buckets, mean, client median", lambda r: f"{r['buckets']:.1f} ms"),
        ]
        print(f"| {a.series} series × {a.days} d at {a.step} s, {data.points:,} points, batches of {a.batch:,} | " + " | ".join(cols) + " |")
        print("|---|" + "---|" * len(cols))
        for label, f in rows:
            print(f"| {label} | " + " | ".join(f(r) for _, r in results) + " |")
    finally:
        for s in locals().get("systems", []):
            p = getattr(s, "proc", None)
            if p and p.poll() is None:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


main()
