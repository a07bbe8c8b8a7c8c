"""A webhook receiver as a user's alerting system would run one (Python's http.server): checks
twind's X-Twin-Signature (t=<unix seconds>,v1=<hex HMAC-SHA256(key, "<t>.<body>")>) with the
key in KEY_FILE, answers 503 to the first FAIL_FIRST requests, 200 after, and prints one JSON
line per request: {"status", "received_at", "key", "event", "signed", "summary", "text", "notices"}.
Prints "listening PORT" first.
Usage: webhook_receiver.py KEY_FILE FAIL_FIRST [PORT]
"""
import hashlib
import hmac
import json
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

key = open(sys.argv[1], "rb").read().rstrip(b"\r\n")
fail_first = int(sys.argv[2])
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
seen = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global seen
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        signature = self.headers.get("X-Twin-Signature", "")
        parts = dict(p.split("=", 1) for p in signature.split(",") if "=" in p)
        expected = hmac.new(key, parts.get("t", "").encode() + b"." + body, hashlib.sha256).hexdigest()
        signed = hmac.compare_digest(expected, parts.get("v1", ""))
        seen += 1
        status = 503 if seen <= fail_first else 200
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {}
        print(json.dumps({
            "status": status, "received_at": time.time(), "key": self.headers.get("Idempotency-Key"), "event": self.headers.get("X-Twin-Event"),
            "signed": signed, "summary": doc.get("summary"), "text": doc.get("text"), "notices": doc.get("notices", []),
        }), flush=True)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(f"listening {server.server_address[1]}", flush=True)
server.serve_forever()
