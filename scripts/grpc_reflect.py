#!/usr/bin/env python3
"""Explore and call a gRPC server through its reflection service, grpcurl-style: no
stubs and no .proto files, the server describes itself.

    python scripts/grpc_reflect.py localhost:50051 list
    python scripts/grpc_reflect.py localhost:50051 list temporec.v1.Recommender
    python scripts/grpc_reflect.py localhost:50051 describe temporec.v1.RecommendRequest
    python scripts/grpc_reflect.py -d '{"domain": "video", "history": [{"itemId": "1"}], "k": 3}' \\
        localhost:50051 temporec.v1.Recommender/Recommend

Requests and responses are protobuf JSON; responses keep the .proto field names (as
grpcurl prints them), requests take those or lowerCamelCase. A failed call prints its
status code and message and exits with 1.
Needs grpcio, grpcio-reflection and protobuf (pip install grpcio-reflection).
"""

from __future__ import annotations

import argparse
import sys

import grpc
from google.protobuf import descriptor, json_format, message_factory
from google.protobuf.descriptor_pool import DescriptorPool
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

SCALARS = {
    value: name.removeprefix("TYPE_").lower()
    for name, value in vars(descriptor.FieldDescriptor).items()
    if name.startswith("TYPE_") and name not in ("TYPE_MESSAGE", "TYPE_ENUM", "TYPE_GROUP")
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-d", dest="data", default="{}", help="the request as JSON; @ reads it from stdin (default {})")
    parser.add_argument(
        "-H", dest="headers", action="append", default=[], metavar="'KEY: VALUE'", help="metadata (repeatable)"
    )
    parser.add_argument("--tls", action="store_true", help="TLS with the system's roots (default: plaintext)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="S", help="deadline in seconds (default 30)")
    parser.add_argument("target", help="host:port")
    parser.add_argument("verb", help="list, describe, or a method: SERVICE/METHOD")
    parser.add_argument("symbol", nargs="?", help="list: a service; describe: a service, method, message or enum")
    args = parser.parse_args(argv)

    credentials = grpc.ssl_channel_credentials() if args.tls else None
    with (
        grpc.secure_channel(args.target, credentials) if credentials else grpc.insecure_channel(args.target)
    ) as channel:
        database = ProtoReflectionDescriptorDatabase(channel)
        pool = DescriptorPool(database)
        try:
            if args.verb == "list":
                if args.symbol:
                    names = [method.full_name for method in pool.FindServiceByName(args.symbol).methods]
                else:
                    names = database.get_services()
                print("\n".join(sorted(names)))
            elif args.verb == "describe":
                if not args.symbol:
                    parser.error("describe: name a service, method, message or enum")
                print(describe(pool, args.symbol))
            else:
                data = sys.stdin.read() if args.data == "@" else args.data
                metadata = [tuple(part.strip() for part in header.split(":", 1)) for header in args.headers]
                print(call(channel, pool, args.verb, data, args.timeout, [(k.lower(), v) for k, v in metadata]))
        except grpc.RpcError as error:
            print(f"ERROR: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1
        except KeyError as error:
            print(f"ERROR: the server does not know {error.args[0]}", file=sys.stderr)
            return 1
        except json_format.ParseError as error:
            print(f"ERROR: -d: {error}", file=sys.stderr)
            return 1
    return 0


def call(channel: grpc.Channel, pool: DescriptorPool, method_name: str, data: str, timeout: float, metadata) -> str:
    """Call a unary method (SERVICE/METHOD) with a JSON request; return the JSON response."""
    method = find_method(pool, method_name)
    request_class = message_factory.GetMessageClass(method.input_type)
    response_class = message_factory.GetMessageClass(method.output_type)
    request = json_format.Parse(data, request_class())
    stub = channel.unary_unary(
        f"/{method.containing_service.full_name}/{method.name}",
        request_serializer=request_class.SerializeToString,
        response_deserializer=response_class.FromString,
    )
    response = stub(request, timeout=timeout, metadata=metadata)
    return json_format.MessageToJson(response, indent=2, preserving_proto_field_name=True)  # as grpcurl prints


def describe(pool: DescriptorPool, symbol: str) -> str:
    """A service, method, message or enum, written as it reads in a .proto file."""
    for find, render in (
        (pool.FindServiceByName, render_service),
        (pool.FindMessageTypeByName, render_message),
        (pool.FindEnumTypeByName, render_enum),
        (lambda name: find_method(pool, name), render_method),
    ):
        try:
            return render(find(symbol))
        except KeyError:
            continue
    raise KeyError(f"symbol {symbol!r}")


def find_method(pool: DescriptorPool, name: str):
    """The method SERVICE/METHOD or SERVICE.METHOD."""
    service_name, _, method_name = name.replace("/", ".").rpartition(".")
    method = pool.FindServiceByName(service_name).methods_by_name.get(method_name)
    if method is None:
        raise KeyError(f"method {name!r}")
    return method


def render_service(service) -> str:
    body = "".join(f"  {render_method(method)}\n" for method in service.methods)
    return f"{service.full_name} is a service:\nservice {service.name} {{\n{body}}}"


def render_method(method) -> str:
    return f"rpc {method.name} ( .{method.input_type.full_name} ) returns ( .{method.output_type.full_name} );"


def render_message(message) -> str:
    body = "".join(f"  {render_field(field)}\n" for field in message.fields)
    return f"{message.full_name} is a message:\nmessage {message.name} {{\n{body}}}"


def render_enum(enum) -> str:
    body = "".join(f"  {value.name} = {value.number};\n" for value in enum.values)
    return f"{enum.full_name} is an enum:\nenum {enum.name} {{\n{body}}}"


def render_field(field) -> str:
    if field.message_type and field.message_type.GetOptions().map_entry:
        key, value = (type_name(f) for f in field.message_type.fields)
        return f"map<{key}, {value}> {field.name} = {field.number};"
    repeated = "repeated " if field.is_repeated else ""
    return f"{repeated}{type_name(field)} {field.name} = {field.number};"


def type_name(field) -> str:
    if field.message_type:
        return f".{field.message_type.full_name}"
    if field.enum_type:
        return f".{field.enum_type.full_name}"
    return SCALARS[field.type]


if __name__ == "__main__":
    sys.exit(main())
