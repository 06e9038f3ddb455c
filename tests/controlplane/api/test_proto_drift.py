"""The committed generated gRPC code matches what scripts/gen_proto.sh makes from the .proto files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
GENERATED = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def test_generated_code_is_current(tmp_path: Path) -> None:
    subprocess.run(["bash", str(REPO / "scripts" / "gen_proto.sh"), str(tmp_path)], cwd=REPO, check=True,
                   env={"PY": sys.executable, "PATH": "/usr/bin:/bin"})
    fresh = {p.relative_to(tmp_path): p.read_bytes() for p in tmp_path.rglob("*") if p.name.endswith(GENERATED)}
    proto_root = REPO / "proto"
    committed = {p.relative_to(proto_root): p.read_bytes() for p in proto_root.rglob("*")
                 if p.name.endswith(GENERATED)}
    assert fresh, "protoc generated nothing"
    assert sorted(fresh) == sorted(committed), "generated files differ in name: run scripts/gen_proto.sh"
    stale = [str(name) for name in fresh if fresh[name] != committed[name]]
    assert not stale, f"stale generated code (run scripts/gen_proto.sh and commit): {stale}"


def test_drift_is_detected(tmp_path: Path) -> None:
    """The comparison above really looks at content: a changed .proto yields different code."""
    proto_copy = tmp_path / "proto"
    (proto_copy / "jitgate" / "v1").mkdir(parents=True)
    src = (REPO / "proto" / "jitgate" / "v1" / "admin.proto").read_text()
    (proto_copy / "jitgate" / "v1" / "admin.proto").write_text(
        src.replace("int32 days = 2;", "int32 days = 2;\n  string note = 3;")
    )
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{proto_copy}",
            f"--python_out={out}",
            str(proto_copy / "jitgate" / "v1" / "admin.proto"),
        ],
        check=True,
    )
    assert (out / "jitgate" / "v1" / "admin_pb2.py").read_bytes() != (
        REPO / "proto" / "jitgate" / "v1" / "admin_pb2.py"
    ).read_bytes()
