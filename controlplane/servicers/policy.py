"""PolicyService: the set in force, validation of a candidate, and dry-run decisions.

ValidatePolicy checks a file someone else wrote: only admins and members of the
policy group `config.policy_authors` may call it, at most
`MAX_CONCURRENT_VALIDATIONS` run at once, and each runs in a sandboxed child
process (policy.sandbox: CPU, memory and wall-clock limits). The server's own
threads only wait for the child, holding nothing live decisions need.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import tempfile
from pathlib import Path

import grpc

from controlplane import convert
from controlplane.errors import JitError
from controlplane.servicers.deps import Deps
from controlplane.servicers.guard import Caller, caller
from jitgate.v1 import policy_pb2, policy_pb2_grpc, types_pb2
from policy import limits, sandbox
from policy.errors import RequestError
from policy.names import name_problem, shown
from policy.request import request_from_json

log = logging.getLogger(__name__)

# Sandboxed checks at once: each is a child process using up to a CPU core and its
# memory limit; two keep a 2-core server answering while authors iterate.
MAX_CONCURRENT_VALIDATIONS = 2


def _problem(out: policy_pb2.ValidatePolicyResponse, file: str, code: str, message: str) -> None:
    out.problems.add(file=file, line=1, col=1, code=code, message=message)


def _validate(content: str, display: str, lim: sandbox.Limits) -> policy_pb2.ValidatePolicyResponse:
    """Check a candidate set in a sandboxed child; problems point at `display`."""
    with tempfile.TemporaryDirectory(prefix="jitgate-validate-") as tmp:
        path = Path(tmp) / "candidate.yaml"
        path.write_text(content, encoding="utf-8")
        out = policy_pb2.ValidatePolicyResponse(ok=False)
        try:
            proc = sandbox.run("policy.jobs:validate", [str(path)], lim)
        except sandbox.SandboxError as e:
            _problem(out, display, "policy.limit", f"checking the policy {e}; the file is refused")
            return out
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            log.error("policy validation child failed (exit %s): %s", proc.returncode, proc.stderr[-2000:])
            _problem(out, display, "policy.internal", "the policy check failed (see server log)")
            return out
    if result.get("ok"):
        return policy_pb2.ValidatePolicyResponse(ok=True, version=result["version"])
    for p in result.get("problems") or []:
        out.problems.add(file=display, line=int(p["line"]), col=int(p["col"]), code=str(p["code"]),
                         message=str(p["message"]))
    return out


def _display_name(filename: str) -> str:
    """The name problems are reported under (the caller's file name, checked like a policy name)."""
    name = Path(filename or "policies.yaml").name or "policies.yaml"
    problem = name_problem(name)
    if problem:
        raise JitError("invalid.argument", f"filename `{shown(name)}` {problem}")
    return name


class PolicyServicer(policy_pb2_grpc.PolicyServiceServicer):
    def __init__(self, deps: Deps) -> None:
        self.d = deps
        self._validations = asyncio.Semaphore(MAX_CONCURRENT_VALIDATIONS)

    async def GetPolicy(
        self, request: policy_pb2.GetPolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.PolicyInfo:
        policy_set = self.d.policies.current
        out = policy_pb2.PolicyInfo(
            version=policy_set.version,
            source=str(self.d.policies.path),
            rules=len(getattr(policy_set, "rules", ()) or ()),
            resources=len(policy_set.resources),
        )
        out.loaded_at.CopyFrom(convert.ts_at(self.d.policies.loaded_at))
        return out

    async def ListResources(
        self, request: policy_pb2.ListResourcesRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ListResourcesResponse:
        """Every resource by name (no address, no credentials), as many as one answer holds."""
        from controlplane.bounds import ROWS_BUDGET

        resources = self.d.policies.current.resources
        out = policy_pb2.ListResourcesResponse()
        size = 0
        for name in sorted(resources):
            r = resources[name]
            info = policy_pb2.ResourceInfo(name=r.name, kind=r.kind, labels=dict(r.labels), logins=list(r.logins),
                                           roles=list(r.roles), description=r.description)
            size += info.ByteSize() + 8
            if size > ROWS_BUDGET:
                out.truncated = True
                break
            out.resources.append(info)
        return out

    def _may_validate(self, who: Caller) -> bool:
        group = self.d.config.policy_authors
        return who.has("admin") or group in self.d.policies.current.groups_of(who.name)

    async def ValidatePolicy(
        self, request: policy_pb2.ValidatePolicyRequest, context: grpc.aio.ServicerContext
    ) -> policy_pb2.ValidatePolicyResponse:
        who = caller()
        if not self._may_validate(who):
            raise JitError(
                "permission.denied",
                f"`{who.name}` may not validate policies: that needs the admin "
                f"role or membership in group `{self.d.config.policy_authors}`",
            )
        size = len(request.content.encode("utf-8", "surrogatepass"))
        if size > limits.MAX_POLICY_FILE_BYTES:
            raise JitError(
                "invalid.argument", f"content is {size} bytes, above the limit of {limits.MAX_POLICY_FILE_BYTES}"
            )
        display = _display_name(request.filename)
        lim = sandbox.Limits(
            self.d.config.validate_cpu_seconds,
            self.d.config.validate_memory_mb * 1024 * 1024,
            max(float(limits.SANDBOX_WALL_SECONDS), 2.0 * self.d.config.validate_cpu_seconds),
        )
        async with self._validations:
            return await self.d.run_slow(_validate, request.content, display, lim)

    async def DryRun(self, request: policy_pb2.DryRunRequest, context: grpc.aio.ServicerContext) -> types_pb2.Decision:
        try:
            policy_request = request_from_json(request.request_json, default_time=dt.datetime.now(dt.UTC))
        except RequestError as e:
            raise JitError("invalid.argument", f"bad request: {e}") from None
        decision = await self.d.run(self.d.policies.current.decide, policy_request)
        return convert.decision(decision) or types_pb2.Decision()
