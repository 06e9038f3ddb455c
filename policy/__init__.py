"""The policy engine: policies.yaml -> a checked, compiled PolicySet -> Decisions.

Pipeline: loader (YAML with marks, what is written) -> checker (what rules mean,
names, approvers, CEL) -> index -> engine (decide). POLICY.md at the project's
shared docs is the contract.
"""
from policy.approvals import ApprovalProgress
from policy.decision import Approval, ApprovalLevel, Decision, SessionOptions
from policy.durations import format_duration, parse_duration
from policy.errors import PolicyError, PolicyLoadError, RequestError
from policy.model import PolicyTest, Resource, Rule, Settings, User
from policy.policyset import PolicySet, load_policy_set, load_policy_text
from policy.request import PolicyRequest
from policy.testing import TestResult

__all__ = [
    "Approval",
    "ApprovalLevel",
    "ApprovalProgress",
    "Decision",
    "PolicyError",
    "PolicyLoadError",
    "PolicyRequest",
    "PolicySet",
    "PolicyTest",
    "RequestError",
    "Resource",
    "Rule",
    "SessionOptions",
    "Settings",
    "TestResult",
    "User",
    "format_duration",
    "load_policy_set",
    "load_policy_text",
    "parse_duration",
]
