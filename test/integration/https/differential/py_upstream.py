# Python's http.server as an upstream for the differential tests, written the
# way a quick API usually is: HTTP/1.1 keep-alive, bodies read only where the
# method is expected to carry one (GET's Content-Length is ignored, as
# BaseHTTPRequestHandler code commonly does). Each request it parses is one
# JSON line on stdout; the answer echoes the method, the target and the
# Authorization header (a careless API).
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def answer(self, read_body):
        n = int(self.headers.get("Content-Length") or 0) if read_body else 0
        body = self.rfile.read(n) if n > 0 else b""
        print(json.dumps({"method": self.command, "target": self.path,
                          "host": self.headers.get("Host"),
                          "authorization": self.headers.get("Authorization"),
                          "bodyBytes": len(body)}), flush=True)
        out = f"{self.command} {self.path}\nauthorization: {self.headers.get('Authorization')}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    def do_GET(self):
        self.answer(False)

    def do_HEAD(self):
        self.answer(False)

    def do_DELETE(self):
        self.answer(False)

    def do_OPTIONS(self):
        self.answer(False)

    def do_POST(self):
        self.answer(True)

    def do_PUT(self):
        self.answer(True)

    def do_PATCH(self):
        self.answer(True)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(json.dumps({"port": server.server_address[1]}), flush=True)
server.serve_forever()
