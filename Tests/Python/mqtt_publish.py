"""Publishes readings as a plain MQTT gateway would (paho-mqtt), QoS 1, each acknowledged by
the broker before the next is counted: N messages on TOPIC, payload
{"seq": k, "temp": k, "ts": <epoch ms>} for k in FIRST .. FIRST+N-1. Prints "published N".
Usage: mqtt_publish.py PORT TOPIC FIRST N
"""
import json
import sys
import time

import paho.mqtt.client as paho

port, topic, first, count = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
client = paho.Client(client_id=f"gateway-{first}")
client.connect("127.0.0.1", port)
client.loop_start()
pending = []
for k in range(first, first + count):
    payload = json.dumps({"seq": k, "temp": float(k), "ts": int(time.time() * 1000)})
    pending.append(client.publish(topic, payload, qos=1))
    if len(pending) >= 100:
        for info in pending:
            info.wait_for_publish(30)
        pending = []
for info in pending:
    info.wait_for_publish(30)
client.loop_stop()
client.disconnect()
print(f"published {count}", flush=True)
