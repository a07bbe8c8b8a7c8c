"""A Sparkplug B edge node written by someone else (pysparkplug), run against twind's host
application through a real broker, the way a plant's edge node would:

  1. waits for the host's STATE birth (spBv1.0/STATE/<host>, online true), as Sparkplug 3.0
     edge nodes do before they publish;
  2. NBIRTH (node metric Uptime) and DBIRTH of device "Pump 1" (Motor/Temperature: Double,
     Running: Boolean, Status: String — not a number);
  3. five DDATA with Motor/Temperature 40.0 .. 44.0;
  4. skips a sequence number, sends one more DDATA (45.0), and waits for the host's
     NCMD Node Control/Rebirth;
  5. drops off the network (the process ends without an MQTT DISCONNECT), so the broker
     publishes its will: the NDEATH with the birth's bdSeq. (pysparkplug 0.6.1's own clean
     disconnect sends an NDEATH with the *next* session's bdSeq, which Sparkplug 3.0 says a host
     must ignore; twind does.)

Prints one line per step ("ok ..."); exits non-zero if a step times out.
Usage: sparkplug_edge.py BROKER_PORT HOST_ID GROUP NODE
"""

import json
import os
import sys
import threading
import time

import paho.mqtt.client as paho
import pysparkplug as psp

port, host_id, group, node_id = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]


def say(text):
    print(text, flush=True)


# 1. The host's STATE, on a plain MQTT client.
online = threading.Event()


def on_state(client, userdata, message):
    try:
        if json.loads(message.payload).get("online") is True:
            online.set()
    except ValueError:
        pass


watcher = paho.Client(client_id=f"{node_id}-state-watch")
watcher.on_message = on_state
watcher.connect("127.0.0.1", port)
watcher.subscribe(f"spBv1.0/STATE/{host_id}", qos=1)
watcher.loop_start()
if not online.wait(30):
    say("fail no STATE birth from the host")
    sys.exit(1)
say("ok host online")

# 2. Births.
rebirth = threading.Event()


def on_command(node, message):
    for metric in message.payload.metrics:
        if metric.name == "Node Control/Rebirth" and metric.value:
            rebirth.set()


now = psp.get_current_timestamp
edge = psp.EdgeNode(
    group_id=group,
    edge_node_id=node_id,
    metrics=[psp.Metric(timestamp=now(), name="Uptime", datatype=psp.DataType.INT64, value=1)],
    client=psp.Client(client_id=node_id),
    cmd_callback=on_command,
)
edge.register(psp.Device(
    device_id="Pump 1",
    metrics=[
        psp.Metric(timestamp=now(), name="Motor/Temperature", datatype=psp.DataType.DOUBLE, value=39.5),
        psp.Metric(timestamp=now(), name="Running", datatype=psp.DataType.BOOLEAN, value=True),
        psp.Metric(timestamp=now(), name="Status", datatype=psp.DataType.STRING, value="ok"),
    ],
))
edge.connect("127.0.0.1", port=port, blocking=False)
deadline = time.monotonic() + 30
while not edge._connected and time.monotonic() < deadline:
    time.sleep(0.01)
if not edge._connected:
    say("fail edge node did not connect")
    sys.exit(1)
say("ok born")

# 3. Data.
for k in range(5):
    edge.update_device("Pump 1", [psp.Metric(timestamp=now(), name="Motor/Temperature", datatype=psp.DataType.DOUBLE, value=40.0 + k)])
say("ok data sent")

# 4. A sequence gap: one number never sent.
_ = edge._seq
edge.update_device("Pump 1", [psp.Metric(timestamp=now(), name="Motor/Temperature", datatype=psp.DataType.DOUBLE, value=45.0)])
if not rebirth.wait(30):
    say("fail no rebirth request after a sequence gap")
    sys.exit(1)
say("ok rebirth requested")

# 5. Gone without a word: the broker sends the will.
say("ok dying")
os._exit(0)
