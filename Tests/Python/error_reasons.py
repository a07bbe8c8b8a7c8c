#!/usr/bin/env python3
"""What a Python client sees of twind's errors, from the .proto files alone.

Generates the twin.v1 stubs with grpc_tools into a temporary directory, then provokes four
errors against a running twind and reads their google.rpc.Status details with
grpc_status.rpc_status.from_call: a bad reading in an Ingest batch, a throttled login, an
expired access token and an unknown device. Prints one line per check; exits 1 on the first
check that fails.

usage: error_reasons.py HOST:PORT PROTO_DIR  (the admin password on standard input, never
in the process list; twind must run with --simulator off and --access-token-lifetime 10s)
"""
import importlib
import math
import sys
import tempfile
import time

import grpc
from grpc_status import rpc_status
from grpc_tools import protoc
from google.rpc import error_details_pb2

address, proto_dir = sys.argv[1:3]
admin_password = sys.stdin.readline().rstrip("\n")

out = tempfile.mkdtemp(prefix="twin-py-")
protos = [f"twin/v1/{name}.proto" for name in ("types", "twin", "auth", "model")]
include = protoc.__file__.rsplit("/", 1)[0] + "/_proto"
if protoc.main(["protoc", f"-I{proto_dir}", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]) != 0:
    sys.exit("protoc failed")
sys.path.insert(0, out)
types = importlib.import_module("twin.v1.types_pb2")
twin = importlib.import_module("twin.v1.twin_pb2")
twin_grpc = importlib.import_module("twin.v1.twin_pb2_grpc")
auth = importlib.import_module("twin.v1.auth_pb2")
auth_grpc = importlib.import_module("twin.v1.auth_pb2_grpc")

channel = grpc.insecure_channel(address)
auth_stub = auth_grpc.AuthServiceStub(channel)
twin_stub = twin_grpc.TwinServiceStub(channel)


def details(error):
    """(code name, ErrorInfo, {detail type: message}) of an RpcError."""
    status = rpc_status.from_call(error)
    if status is None:
        fail(f"no google.rpc.Status details on {error.code()}: {error.details()}")
    found = {}
    for any_detail in status.details:
        for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RetryInfo, error_details_pb2.ResourceInfo):
            if any_detail.Is(kind.DESCRIPTOR):
                message = kind()
                any_detail.Unpack(message)
                found[kind.DESCRIPTOR.name] = message
    info = found.get("ErrorInfo")
    if info is None or info.domain != "twin.v1":
        fail(f"no twin.v1 ErrorInfo in {list(found)}")
    return error.code().name, info, found


def fail(why):
    print(f"FAIL {why}", flush=True)
    sys.exit(1)


def expect_error(call, code, reason):
    try:
        call()
    except grpc.RpcError as error:
        name, info, found = details(error)
        if name != code or info.reason != reason:
            fail(f"expected {code} {reason}, got {name} {info.reason}: {error.details()}")
        return info, found
    fail(f"expected {code} {reason}, the call succeeded")


admin = auth_stub.Login(auth.LoginRequest(username="admin", password=admin_password))
bearer = [("authorization", f"Bearer {admin.access_token}")]

# 1. An unknown device: NOT_FOUND, DEVICE_NOT_FOUND, ResourceInfo naming it.
info, found = expect_error(lambda: twin_stub.GetDevice(twin.GetDeviceRequest(device_id="no-such-pump"), metadata=bearer),
                           "NOT_FOUND", "DEVICE_NOT_FOUND")
resource = found.get("ResourceInfo")
if resource is None or resource.resource_type != "twin.v1.Device" or resource.resource_name != "no-such-pump":
    fail(f"ResourceInfo: {resource}")
print(f"ok unknown device: {info.reason} {resource.resource_type} {resource.resource_name}", flush=True)

# 2. A bad reading in the second batch: INVALID_ARGUMENT, READING_INVALID, batch and reading
#    in the metadata, the field in BadRequest.
device = types.Device(id="py-press", type="press", sensors=[types.SensorSpec(name="force", unit="kN")])
twin_stub.UpsertDevice(twin.UpsertDeviceRequest(device=device), metadata=bearer)
now = int(time.time())


def reading(value):
    r = types.Reading(device_id="py-press", sensor="force", value=value)
    r.time.seconds = now
    return r


batches = [twin.IngestRequest(readings=[reading(1.0), reading(2.0)]),
           twin.IngestRequest(readings=[reading(3.0), reading(4.0), reading(math.nan)])]
info, found = expect_error(lambda: twin_stub.Ingest(iter(batches), metadata=bearer), "INVALID_ARGUMENT", "READING_INVALID")
meta = dict(info.metadata)
if meta.get("batch") != "1" or meta.get("reading") != "2" or meta.get("problem") != "not_finite" or meta.get("accepted_batches") != "1":
    fail(f"READING_INVALID metadata: {meta}")
fields = [v.field for v in found["BadRequest"].field_violations] if "BadRequest" in found else []
if fields != ["readings[2].value"]:
    fail(f"BadRequest fields: {fields}")
print(f"ok bad reading: {info.reason} batch={meta['batch']} reading={meta['reading']} field={fields[0]}", flush=True)

# 3. A throttled login: RESOURCE_EXHAUSTED, LOGIN_THROTTLED, RetryInfo with the wait.
throttled = None
for attempt in range(12):
    try:
        auth_stub.Login(auth.LoginRequest(username="admin", password="wrong password"))
        fail("a wrong password logged in")
    except grpc.RpcError as error:
        name, info, found = details(error)
        if name == "UNAUTHENTICATED" and info.reason == "CREDENTIALS_INVALID":
            continue
        if name == "RESOURCE_EXHAUSTED" and info.reason == "LOGIN_THROTTLED":
            throttled = (attempt, info, found)
            break
        fail(f"login: {name} {info.reason}")
if throttled is None:
    fail("twelve wrong passwords in a row were never throttled")
attempt, info, found = throttled
# Five wrong passwords are free; on a slow machine the first 1 s wait may pass between attempts.
if attempt < 5:
    fail(f"throttled after only {attempt} failures")
retry = found.get("RetryInfo")
if retry is None or retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9 <= 0:
    fail(f"RetryInfo: {retry}")
print(f"ok throttled login after {attempt} failures: {info.reason} scope={info.metadata['scope']} "
      f"retry in {retry.retry_delay.seconds + retry.retry_delay.nanos / 1e9:.1f}s", flush=True)

# 4. An expired access token (twind runs with --access-token-lifetime 10s): UNAUTHENTICATED,
#    TOKEN_EXPIRED. WhoAmI succeeds until the token's lifetime is over.
deadline = time.monotonic() + 30
while True:
    try:
        auth_stub.WhoAmI(auth.WhoAmIRequest(), metadata=bearer)
    except grpc.RpcError as error:
        name, info, found = details(error)
        if name != "UNAUTHENTICATED" or info.reason != "TOKEN_EXPIRED":
            fail(f"expected UNAUTHENTICATED TOKEN_EXPIRED, got {name} {info.reason}")
        break
    if time.monotonic() > deadline:
        fail("the access token never expired")
    time.sleep(0.2)
print(f"ok expired token: {info.reason}", flush=True)
