"""Helpers shared by the Python benchmarks beside twin-bench."""
import os
import socket


def free_port():
    """A loopback port the kernel just handed out (released again for a server to take)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_seconds(pid):
    """A process's user + system CPU time so far, in seconds (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def twin_stubs(out):
    """Generates the twin.v1 Python stubs from the repository's .proto files into `out` (with
    grpc_tools, as any client would) and returns their modules by name: types_pb2, twin_pb2,
    twin_pb2_grpc, auth_pb2, auth_pb2_grpc."""
    import importlib
    import sys
    from grpc_tools import protoc

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.makedirs(out, exist_ok=True)
    include = protoc.__file__.rsplit("/", 1)[0] + "/_proto"
    protos = [f"twin/v1/{n}.proto" for n in ("types", "twin", "auth", "model")]
    if protoc.main(["protoc", f"-I{root}/proto", f"-I{include}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]) != 0:
        raise SystemExit("protoc failed")
    sys.path.insert(0, out)
    names = ("types_pb2", "twin_pb2", "twin_pb2_grpc", "auth_pb2", "auth_pb2_grpc")
    return {n: importlib.import_module(f"twin.v1.{n}") for n in names}
