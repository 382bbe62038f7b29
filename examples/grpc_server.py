"""The demo's gRPC service (examples/protos/weather.proto): a grpcio server on 127.0.0.1 with server reflection and
the health service. The .proto is compiled when the server starts (grpcio-tools); no generated code is kept.

    python examples/grpc_server.py [PORT]     # default 50051
"""

from __future__ import annotations

import datetime
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_tools import protoc

PROTO = Path(__file__).resolve().parent / "protos" / "weather.proto"
SERVICE = "weather.v1.Forecasts"


def compiled_pool() -> descriptor_pool.DescriptorPool:
    """The proto compiled into a descriptor pool (imports first, as protoc lists them)."""
    well_known = Path(protoc.__file__).parent / "_proto"
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "weather.pb"
        argv = ["protoc", f"-I{PROTO.parent}", f"-I{well_known}", f"--descriptor_set_out={out}", "--include_imports"]
        if protoc.main([*argv, PROTO.name]) != 0:
            raise SystemExit(f"protoc could not compile {PROTO}")
        files = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for proto in files.file:
        pool.AddSerializedFile(proto.SerializeToString())
    return pool


POOL = compiled_pool()


def message(name: str) -> Any:
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(f"weather.v1.{name}"))


def _base(city: str) -> float:
    return 8 + zlib.crc32(city.lower().encode()) % 20  # the same city, the same weather


def get_forecast(request: Any, context: grpc.ServicerContext) -> Any:
    if not request.city.strip():
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "city is empty; give a city name such as Lisbon")
    low, high = _base(request.city), _base(request.city) + 7
    unit = request.unit or 1
    if unit == 2:
        low, high = low * 9 / 5 + 32, high * 9 / 5 + 32
    sunday = datetime.date.today().weekday() == 5  # tomorrow is Sunday
    conditions = "sunny" if sunday else ["sunny", "cloudy", "showers"][int(low) % 3]
    rain = 0 if conditions == "sunny" else 20 + int(high) % 60
    return message("Forecast")(
        city=request.city, low=low, high=high, unit=unit, conditions=conditions, rain_percent=rain
    )


def stream_hourly(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
    start = datetime.datetime.now(datetime.UTC).replace(minute=0, second=0, microsecond=0)
    for hour in range(max(1, min(request.hours or 6, 24))):
        reading = message("Reading")(celsius=round(_base(request.city) + 3 * ((hour % 12) / 6 - 1), 1))
        reading.at.FromDatetime(start + datetime.timedelta(hours=hour))
        yield reading


def serve(port: int) -> grpc.Server:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    methods = {m.name: m for m in POOL.FindServiceByName(SERVICE).methods}

    def handler(make: Any, name: str, fn: Any) -> Any:
        method = methods[name]
        return make(
            fn,
            request_deserializer=message_factory.GetMessageClass(method.input_type).FromString,
            response_serializer=message_factory.GetMessageClass(method.output_type).SerializeToString,
        )

    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "GetForecast": handler(grpc.unary_unary_rpc_method_handler, "GetForecast", get_forecast),
                    "StreamHourly": handler(grpc.unary_stream_rpc_method_handler, "StreamHourly", stream_hourly),
                },
            )
        ]
    )
    checks = health.HealthServicer()
    checks.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(checks, server)
    reflection.enable_server_reflection([SERVICE, reflection.SERVICE_NAME], server, pool=POOL)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 50051
    running = serve(port)  # (a server nobody holds is stopped when collected)
    print(f"weather gRPC service on 127.0.0.1:{port}", flush=True)
    threading.Event().wait()
