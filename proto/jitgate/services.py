"""The services of the control plane's mTLS API port (the sign-in listener serves its own).

One list for what enumerates them all: the server's health names, the bounds table
(`controlplane/bounds.py`) and the failover rule's completeness test (`jitgate.endpoints`).
"""
from __future__ import annotations

from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor

from jitgate.v1 import (
    access_pb2,
    admin_pb2,
    audit_pb2,
    broker_pb2,
    lifecycle_pb2,
    locks_pb2,
    policy_pb2,
    recordings_pb2,
)

_MODULES = (access_pb2, broker_pb2, policy_pb2, audit_pb2, admin_pb2, recordings_pb2, locks_pb2, lifecycle_pb2)


def api_services() -> list[ServiceDescriptor]:
    """Every service the API port serves."""
    return [s for m in _MODULES for s in m.DESCRIPTOR.services_by_name.values()]


def api_methods() -> dict[str, MethodDescriptor]:
    """ "/jitgate.v1.<Service>/<Method>" -> the method, for every RPC of the API port."""
    return {f"/{s.full_name}/{m.name}": m for s in api_services() for m in s.methods}


__all__ = ["api_methods", "api_services"]
