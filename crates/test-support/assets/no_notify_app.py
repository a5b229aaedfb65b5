#!/usr/bin/env python3
# A release from a stack without a blargh library: it takes its sockets from LISTEN_FDS
# and LISTEN_FDNAMES (systemd's protocol) but never sends READY=1. On the listener named
# blargh-ready (its own, for the agent's readiness check) it answers GET /up: 503 while
# warming up, then 200 (or 503 forever when UP_NEVER is set). On the shared listeners it
# says which version and pid answer. SIGTERM: stop accepting, answer what comes in with
# "Connection: close" for a second, exit.
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from socketserver import ThreadingMixIn

VERSION = "@VERSION@"
WARMUP_S = float("@WARMUP_S@")
UP_NEVER = "@UP_NEVER@" == "1"

if int(os.environ.get("LISTEN_PID", "0")) != os.getpid():
    sys.exit("not started with sockets (LISTEN_PID is not mine)")
names = os.environ.get("LISTEN_FDNAMES", "").split(":")
count = int(os.environ["LISTEN_FDS"])
started = time.monotonic()
draining = False
print(f"{VERSION}: sockets {names[:count]}", flush=True)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        private = self.server.name == "blargh-ready"
        if private and self.path == "/up":
            warm = time.monotonic() - started >= WARMUP_S
            code = 200 if warm and not UP_NEVER else 503
            body = b"up\n" if code == 200 else b"warming up\n"
        elif private:
            code, body = 404, b"only /up here\n"
        else:
            code, body = 200, f"hello from {VERSION} pid {os.getpid()}\n".encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        if draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)


class Server(ThreadingMixIn, HTTPServer):
    daemon_threads = True


servers = []
for i, name in enumerate(names[:count]):
    s = Server(("127.0.0.1", 0), Handler, bind_and_activate=False)
    s.socket.close()
    s.socket = socket.socket(fileno=3 + i)
    s.name = name
    servers.append(s)
    threading.Thread(target=s.serve_forever, daemon=True).start()


# Once warm, a file says so in the working directory (the data directory), for a
# readiness command: warm-<pid>.
def mark_warm():
    time.sleep(WARMUP_S)
    if not UP_NEVER:
        open(f"warm-{os.getpid()}", "w").close()


threading.Thread(target=mark_warm, daemon=True).start()

# APP_CERT_REPORT (from the app's env file): a certificate report to send the agent over
# NOTIFY_SOCKET, as the blargh library's notify::certificate does.
report = os.environ.get("APP_CERT_REPORT")
if report and os.environ.get("NOTIFY_SOCKET"):
    n = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    n.sendto(f"X_BLARGH_CERT={report}".encode(), os.environ["NOTIFY_SOCKET"])
    n.close()


def on_term(*_):
    global draining
    draining = True


signal.signal(signal.SIGTERM, on_term)
while not draining:
    time.sleep(0.05)
for s in servers:
    threading.Thread(target=s.shutdown, daemon=True).start()
time.sleep(1.0)
os._exit(0)
