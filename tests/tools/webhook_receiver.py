"""A real webhook receiver for the notification tests.

Serves HTTP on 127.0.0.1 (a port the system picks; prints `port N`), and
verifies every delivery with the Standard Webhooks reference library
against each secret the test has given it. Reads commands on stdin, one per
line: `secret whsec_...` (learn a secret), `status N [retry-after]` (answer
N from now on). Prints one JSON line per request: its webhook-id, the
indexes of the secrets that verify it, the answer given, and the body.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

secrets = []
answer = {"status": 200, "retry_after": None}
lock = threading.Lock()
# Requests are served on threads: one line at a time on stdout.
printing = threading.Lock()


def say(line):
    with printing:
        print(json.dumps(line), flush=True)


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("content-length", "0"))
        body = self.rfile.read(length)
        headers = {k.lower(): v for k, v in self.headers.items()}
        with lock:
            known = list(secrets)
            status, retry_after = answer["status"], answer["retry_after"]
        verified = []
        for i, secret in enumerate(known):
            try:
                Webhook(secret).verify(body, headers)
                verified.append(i)
            except Exception:
                pass
        line = {
            "id": headers.get("webhook-id"),
            "verified_by": verified,
            "signatures": headers.get("webhook-signature", "").count("v1,"),
            "status": status,
            "body": json.loads(body) if body else None,
        }
        say(line)
        self.send_response(status)
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def commands():
    for line in sys.stdin:
        words = line.split()
        with lock:
            if words[:1] == ["secret"]:
                secrets.append(words[1])
            elif words[:1] == ["status"]:
                answer["status"] = int(words[1])
                answer["retry_after"] = int(words[2]) if len(words) > 2 else None
        say({"ack": line.strip()})
    server.shutdown()


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"port {server.server_address[1]}", flush=True)
threading.Thread(target=commands, daemon=True).start()
server.serve_forever()
