"""One unary call with the official Connect client for Python (PyPI
connectrpc), with google.protobuf message classes built from the descriptor
set the registry offers at /api/vpnregistry.binpb (no generated code).

Usage: python connect_client.py BASE_URL TOKEN PROCEDURE json|binary < request.json
Prints {"ok": {"json", "binary"}} or {"error": {"code", "message", "details"}}.
"""

import base64
import json
import sys
import urllib.request

from google.protobuf import descriptor_pb2, json_format, message_factory

from connectrpc.client import ConnectClientSync
from connectrpc.compat import google_protobuf_binary_codec, google_protobuf_json_codec
from connectrpc.errors import ConnectError
from connectrpc.method import IdempotencyLevel, MethodInfo, StreamType


def main() -> None:
    base, token, procedure, fmt = sys.argv[1:5]
    request_json = sys.stdin.read()
    with urllib.request.urlopen(f"{base}/api/vpnregistry.binpb") as answer:
        descriptors = descriptor_pb2.FileDescriptorSet.FromString(answer.read())
    classes = message_factory.GetMessages(descriptors.file)
    service_name, method_name = procedure.split("/")
    method = next(
        m
        for f in descriptors.file
        for s in f.service
        if f"{f.package}.{s.name}" == service_name
        for m in s.method
        if m.name == method_name
    )
    request_class = classes[method.input_type.lstrip(".")]
    response_class = classes[method.output_type.lstrip(".")]
    info = MethodInfo(
        name=method_name,
        service_name=service_name,
        input=request_class,
        output=response_class,
        idempotency_level=IdempotencyLevel.UNKNOWN,
        stream_type=StreamType.UNARY,
    )
    codec = google_protobuf_json_codec() if fmt == "json" else google_protobuf_binary_codec()
    request = json_format.Parse(request_json, request_class())
    with ConnectClientSync(base, codec=codec) as client:
        try:
            response = client.execute_unary(
                request=request, method=info, headers={"authorization": f"Bearer {token}"}
            )
        except ConnectError as e:
            details = [
                {"type": d.type_name, "value": base64.b64encode(d.message_bytes).decode(), "debug": None}
                for d in e.details
            ]
            print(json.dumps({"error": {"code": e.code.value, "message": e.message, "details": details}}))
            return
    print(
        json.dumps(
            {
                "ok": {
                    "json": json.loads(json_format.MessageToJson(response)),
                    "binary": base64.b64encode(response.SerializeToString()).decode(),
                }
            }
        )
    )


if __name__ == "__main__":
    main()
