# A gRPC server and client (python3-grpcio, no generated code: raw bytes
# messages) for the HTTP/2 interception tests.
#   echo.py serve CERT KEY          serves demo.Echo on 127.0.0.1, prints its port
#   echo.py call PORT CA            calls through https_proxy, prints one JSON line per call
import json
import sys
import time
from concurrent import futures

import grpc

SERVICE = "demo.Echo"


def serve(cert: str, key: str) -> None:
    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        auth = dict(context.invocation_metadata()).get("authorization", "")
        return b"echo:" + request + b" auth=" + auth.encode()

    def stream(request: bytes, context: grpc.ServicerContext):
        for i in range(3):
            yield b"part-%d" % i
            time.sleep(0.05)

    def fail(request: bytes, context: grpc.ServicerContext) -> bytes:
        context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Forbidden": grpc.unary_unary_rpc_method_handler(unary),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Stream": grpc.unary_stream_rpc_method_handler(stream),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    creds = grpc.ssl_server_credentials([(open(key, "rb").read(), open(cert, "rb").read())])
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print(port, flush=True)
    server.wait_for_termination(timeout=300)


def call(port: str, ca: str) -> None:
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    channel = grpc.secure_channel(f"127.0.0.1:{port}", creds, options=[("grpc.ssl_target_name_override", "localhost")])
    md = [("authorization", "Bearer clawpatrol-placeholder-api")]

    def report(name, fn):
        try:
            out = fn()
            print(json.dumps({"call": name, "code": "OK", "reply": out}), flush=True)
        except grpc.RpcError as e:
            print(json.dumps({"call": name, "code": e.code().name, "details": e.details()}), flush=True)

    unary = channel.unary_unary(f"/{SERVICE}/Unary")
    report("unary", lambda: unary(b"hi", metadata=md, timeout=20).decode())
    stream = channel.unary_stream(f"/{SERVICE}/Stream")
    report("stream", lambda: [m.decode() for m in stream(b"", metadata=md, timeout=20)])
    forbidden = channel.unary_unary(f"/{SERVICE}/Forbidden")
    report("forbidden", lambda: forbidden(b"x", metadata=md, timeout=20).decode())
    fail = channel.unary_unary(f"/{SERVICE}/Fail")
    report("fail", lambda: fail(b"x", metadata=md, timeout=20).decode())


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        call(sys.argv[2], sys.argv[3])
