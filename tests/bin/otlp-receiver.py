#!/usr/bin/env python3
"""An OTLP/HTTP logs receiver for tracer's tests, on the official protobuf definitions
(PyPI's opentelemetry-proto, installed by scripts/setup.sh into its venv).

Every POST body is decoded as an ExportLogsServiceRequest; a body that does not decode,
or a request that is not protobuf, gets a 400 or 415 and is written down as an error.
Each request becomes one JSON line in --out: its resource's attributes, its scope, and
its records (times, severity, body, event name, attributes). The port it listens on is
written to --port-file once it listens. It stops after --seconds (bounded)."""

import argparse
import json
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
    ExportLogsServiceResponse,
)


def value(v):
    """An AnyValue as plain JSON."""
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, kind)


def attributes(kvs):
    out = {}
    for kv in kvs:
        if kv.key in out:
            raise ValueError(f"attribute {kv.key} twice")
        out[kv.key] = value(kv.value)
    return out


def decoded(req):
    resources = []
    for rl in req.resource_logs:
        scopes = []
        for sl in rl.scope_logs:
            records = [
                {
                    "time_unix_nano": r.time_unix_nano,
                    "observed_time_unix_nano": r.observed_time_unix_nano,
                    "severity_number": r.severity_number,
                    "severity_text": r.severity_text,
                    "body": value(r.body),
                    "event_name": r.event_name,
                    "attributes": attributes(r.attributes),
                }
                for r in sl.log_records
            ]
            scopes.append(
                {"name": sl.scope.name, "version": sl.scope.version, "records": records}
            )
        resources.append({"attributes": attributes(rl.resource.attributes), "scopes": scopes})
    return resources


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    requests = 0
    lock = threading.Lock()

    def reply(self, status, body=b"", ctype="application/x-protobuf"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def write(self, line):
        with Handler.lock:
            self.server.out.write(json.dumps(line) + "\n")
            self.server.out.flush()

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/logs":
            self.write({"error": f"POST to {self.path}"})
            return self.reply(404, b"not here", "text/plain")
        if self.headers.get("Content-Type") != "application/x-protobuf":
            self.write({"error": f"Content-Type {self.headers.get('Content-Type')}"})
            return self.reply(415, b"protobuf only", "text/plain")
        req = ExportLogsServiceRequest()
        try:
            req.ParseFromString(body)
            resources = decoded(req)
        except (DecodeError, ValueError) as e:
            self.write({"error": f"undecodable body: {e}"})
            return self.reply(400, b"undecodable", "text/plain")
        with Handler.lock:
            Handler.requests += 1
            n = Handler.requests
        self.write({"request": n, "bytes": len(body), "resource_logs": resources})
        self.reply(200, ExportLogsServiceResponse().SerializeToString())

    def log_message(self, *args):
        pass


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--port-file", required=True)
    p.add_argument("--seconds", type=float, default=300)
    a = p.parse_args()
    server = HTTPServer(("127.0.0.1", 0), Handler)
    server.out = open(a.out, "w")
    with open(a.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(a.port_file + ".tmp", a.port_file)
    threading.Timer(a.seconds, server.shutdown).start()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
