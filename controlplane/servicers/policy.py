"""PolicyService: the set in force, validation of a candidate, and dry-run decisions."""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import grpc

from controlplane import convert, policy_watch
from controlplane.errors import JitError
from controlplane.servicers.deps import Deps
from jitgate.v1 import policy_pb2, policy_pb2_grpc, types_pb2

_MAX_POLICY_BYTES = 4 * 1024 * 1024


def _validate(content: str, filename: str) -> policy_pb2.ValidatePolicyResponse:
    """Compile a candidate set in a scratch directory; problems point at `filename`."""
    if len(content.encode()) > _MAX_POLICY_BYTES:
        raise JitError("invalid.argument", f"policy content is larger than {_MAX_POLICY_BYTES} bytes")
    name = Path(filename or "policies.yaml").name
    if not name.endswith((".yaml", ".yml")):
        name += ".yaml"
    with tempfile.TemporaryDirectory(prefix="jitgate-validate-") as tmp:
        path = Path(tmp) / name
        path.write_text(content)
        try:
            policy_set = policy_watch.load(path)
        except Exception as e:
            out = policy_pb2.ValidatePolicyResponse(ok=False)
            for err in getattr(e, "errors", None) or []:
                file = str(getattr(err, "file", ""))
                out.problems.add(
                    file=filename or name if file.startswith(tmp) or not file else file,
                    line=int(getattr(err, "line", 0)), col=int(getattr(err, "col", 0)),
                    code=str(getattr(err, "code", "")), message=str(getattr(err, "message", err)),
                )
            if not out.problems:
                out.problems.add(file=filename or name, line=1, col=1, code="policy.error", message=str(e))
            return out
    return policy_pb2.ValidatePolicyResponse(ok=True, version=policy_set.version)


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps

    async def GetPolicy(self, request: Any, context: grpc.aio.ServicerContext) -> policy_pb2.PolicyInfo:
        policy_set = self.d.policies.current
        out = policy_pb2.PolicyInfo(
            version=policy_set.version, source=str(self.d.policies.path),
            rules=len(getattr(policy_set, "rules", ()) or ()), resources=len(policy_set.resources),
        )
        out.loaded_at.CopyFrom(convert.ts(self.d.policies.loaded_at))
        return out

    async def ValidatePolicy(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ValidatePolicyResponse:
        return await self.d.run_slow(_validate, request.content, request.filename)

    async def DryRun(self, request: Any, context: grpc.aio.ServicerContext) -> types_pb2.Decision:
        from policy import PolicyRequest

        try:
            mapping = json.loads(request.request_json)
            policy_request = PolicyRequest.from_mapping(mapping, default_time=dt.datetime.now(dt.timezone.utc))
        except (ValueError, TypeError) as e:  # JSONDecodeError and policy.RequestError are ValueErrors
            raise JitError("invalid.argument", f"bad request: {e}") from None
        decision = await self.d.run(self.d.policies.current.decide, policy_request)
        return convert.decision(decision) or types_pb2.Decision()
