#!/usr/bin/env python3
"""StreamUpdates fan-out seen by a different client: grpcio (gRPC C-core, asyncio).

    python3 Benchmarks/fanout_grpcio.py [--subscribers 1000] [--devices 1000] [--connections 10]
                                        [--seconds 20] [--build release]

The same measurement as `twin-bench fanout` with another gRPC implementation on the client
side, from the .proto files alone: starts twind with a simulated plant ticking every second,
opens --subscribers StreamUpdates streams over --connections channels, and for each stream
times a tick's first delivery (arrival minus the time of the first snapshot in it; every
snapshot of a simulator tick has the tick's time). Messages are taken as bytes and only the
path to that first time is walked, so the client spends its CPU on the transport, not on
decoding a thousand snapshots per message. Prints p50/p99/max and twind's and the client's
CPU as a share of one core.
"""
import argparse, asyncio, os, shutil, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import cpu_seconds, free_port, twin_stubs  # noqa: E402

import grpc  # noqa: E402

PASSWORD = "fanout-bench-admin-1"


def varint(b, i):
    r = s = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return r, i


def field(b, i, end, want):
    """(start, end) of the first length-delimited field number `want` in b[i:end], or None."""
    while i < end:
        tag, i = varint(b, i)
        wire, number = tag & 7, tag >> 3
        if wire == 2:
            n, i = varint(b, i)
            if number == want:
                return i, i + n
            i += n
        elif wire == 0:
            _, i = varint(b, i)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:
            return None
    return None


def tick_time(b):
    """StreamUpdatesResponse.devices(1).updates(1)[0].snapshot(1).time(4), in ns."""
    r = (0, len(b))
    for number in (1, 1, 1, 4):
        r = field(b, r[0], r[1], number)
        if r is None:
            return None
    seconds = nanos = 0
    i = r[0]
    while i < r[1]:
        tag, i = varint(b, i)
        v, i = varint(b, i)
        if tag >> 3 == 1:
            seconds = v
        elif tag >> 3 == 2:
            nanos = v
    return seconds * 1_000_000_000 + nanos


async def measure(args, twind, addr):
    out = tempfile.mkdtemp(prefix="twin-py-")
    stubs = twin_stubs(out)
    auth, auth_grpc, twin = stubs["auth_pb2"], stubs["auth_pb2_grpc"], stubs["twin_pb2"]
    token = None
    for _ in range(600):
        try:
            with grpc.insecure_channel(addr) as ch:
                token = auth_grpc.AuthServiceStub(ch).Login(auth.LoginRequest(username="admin", password=PASSWORD), timeout=2).access_token
            break
        except grpc.RpcError:
            time.sleep(0.1)
    if token is None:
        sys.exit("twind did not come up")
    metadata = (("authorization", "Bearer " + token),)
    # Distinct channel arguments keep the channels from sharing one connection.
    channels = [grpc.aio.insecure_channel(addr, options=[("grpc.use_local_subchannel_pool", 1), ("twin.bench.channel", i)]) for i in range(args.connections)]
    request = twin.StreamUpdatesRequest().SerializeToString()
    latencies, synced, measure_from = [], [0], [1 << 62]

    async def subscriber(channel):
        call = channel.unary_stream("/twin.v1.TwinService/StreamUpdates")(request, metadata=metadata)
        last = 0
        async for message in call:
            now = time.time_ns()
            if message[:1] == b"\x12":  # sync_complete (field 2)
                synced[0] += 1
            elif message[:1] == b"\x0a":  # devices (field 1)
                t = tick_time(message)
                if t and t > last:
                    last = t
                    if t >= measure_from[0]:
                        latencies.append((now - t) / 1e6)

    tasks = [asyncio.create_task(subscriber(channels[i % args.connections])) for i in range(args.subscribers)]
    started = time.time()
    while synced[0] < args.subscribers and time.time() - started < 120:
        await asyncio.sleep(0.1)
    measure_from[0] = time.time_ns() + 1_000_000_000
    await asyncio.sleep(1)
    twind0, self0, t0 = cpu_seconds(twind.pid), cpu_seconds(os.getpid()), time.time()
    await asyncio.sleep(args.seconds)
    window = time.time() - t0
    twind_cpu, self_cpu = (cpu_seconds(twind.pid) - twind0) / window, (cpu_seconds(os.getpid()) - self0) / window
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ch in channels:
        await ch.close()
    shutil.rmtree(out, ignore_errors=True)
    latencies.sort()
    n = len(latencies)
    if n == 0:
        sys.exit("no deliveries measured")
    print(f"fanout (grpcio client): {synced[0]} of {args.subscribers} subscribers synced over {args.connections} channels, "
          f"{args.devices} devices every 1s, {n} tick deliveries timed")
    print(f"  p50 {latencies[n // 2]:.1f} ms  p99 {latencies[min(n - 1, int(n * 0.99))]:.1f} ms  max {latencies[-1]:.1f} ms")
    print(f"  twind CPU {100 * twind_cpu:.0f} % of one core, client CPU {100 * self_cpu:.0f} %")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--build", default="release")
    args = ap.parse_args()
    data = tempfile.mkdtemp(prefix="twind-fanout-")
    port = free_port()
    env = dict(os.environ, TWIND_ADMIN_PASSWORD=PASSWORD)
    twind = subprocess.Popen(
        [f"{root}/.build/{args.build}/twind", "--data-dir", data, "--listen", f"127.0.0.1:{port}", "--http-listen", "off",
         "--log-level", "notice", "--devices", str(args.devices), "--interval", "1s"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        asyncio.run(measure(args, twind, f"127.0.0.1:{port}"))
    finally:
        twind.terminate()
        twind.wait()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
