"""PolicySet: a checked, compiled policy set that decides requests."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from policy import approvals, engine, index, testing
from policy.approvers import is_eligible as _is_eligible
from policy.checker import Checked, check
from policy.decision import Decision
from policy.errors import PolicyError, PolicyLoadError
from policy.loader import Raw, read_raw, read_text
from policy.model import PolicyTest, Resource, Rule, Settings, User
from policy.request import PolicyRequest
from policy.yamlnodes import Sink


@dataclass(eq=False)
class PolicySet:
    """A policy set ready to serve. Safe to call from many threads (see cel.py)."""

    version: str
    source_path: Path | None
    settings: Settings
    users: dict[str, User]
    groups: dict[str, frozenset[str]]
    resources: dict[str, Resource]
    rules: tuple[Rule, ...]
    tests: tuple[PolicyTest, ...]
    _programs: dict[str, Any] = field(repr=False)
    _index: dict[str, tuple[index.Candidate, ...]] = field(repr=False)
    _user_cel: dict[str, Any] = field(repr=False)
    _resource_cel: dict[str, Any] = field(repr=False)
    warnings: list[PolicyError] = field(default_factory=list)
    _groups: dict[str, frozenset[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def _from_checked(cls, c: Checked, source: Path | None) -> PolicySet:
        analyses = {r.name: index.analyse(c.programs[r.name].ast) for r in c.rules}
        idx = index.build(list(c.rules), analyses, c.resources)
        return cls(
            version=c.version, source_path=source, settings=c.settings, users=c.users,
            groups=c.groups, resources=c.resources, rules=c.rules, tests=c.tests,
            _programs=c.programs, _index=idx,
            _user_cel={n: engine.user_value(u) for n, u in c.users.items()},
            _resource_cel={n: engine.resource_value(r) for n, r in c.resources.items()},
            warnings=_label_warnings(idx, analyses, c.resources),
            _groups={n: frozenset(u.groups) for n, u in c.users.items()},
        )

    def groups_of(self, user: str) -> frozenset[str]:
        """The effective groups of a user (empty for an unknown user)."""
        u = self.users.get(user)
        return frozenset(u.groups) if u else frozenset()

    def peers_of(self, user: str) -> frozenset[str] | None:
        """Everyone who shares a group with `user` (not `user`); None when `user` is in no group
        (risk scoring then counts everyone as a peer)."""
        groups = self.groups_of(user)
        if not groups:
            return None
        return frozenset().union(*(self.groups.get(g, frozenset()) for g in groups)) - {user}

    def decide(self, req: PolicyRequest) -> Decision:
        """The decision for a request, evaluating only the rules the index keeps.

        Never raises: anything unexpected becomes a deny that says why (fail closed).
        """
        try:
            refused = engine.precheck(req, self.users, self.resources, self.version)
            if refused is not None:
                return _with_risk(refused, req)
            act = engine.activation(req, self._user_cel[req.user], self._resource_cel[req.resource])
            outcome = engine.evaluate_indexed(self._index[req.resource], self._programs, req, act,
                                              self._groups[req.user])
            return _with_risk(engine.combine(outcome, req, self.settings, self.version), req)
        except Exception as e:  # a bug must refuse access, not crash a server thread
            return _with_risk(_internal_deny(self.version, e), req)

    def naive_decide(self, req: PolicyRequest) -> Decision:
        """The reference: the same decision, evaluating every rule's CEL in file order."""
        try:
            refused = engine.precheck(req, self.users, self.resources, self.version)
            if refused is not None:
                return _with_risk(refused, req)
            act = engine.activation(req, self._user_cel[req.user], self._resource_cel[req.resource])
            outcome = engine.evaluate_naive(self.rules, self._programs, req, act)
            return _with_risk(engine.combine(outcome, req, self.settings, self.version), req)
        except Exception as e:
            return _with_risk(_internal_deny(self.version, e), req)

    def candidate_rules(self, resource: str) -> list[str]:
        """Names of the rules the index keeps for a resource (for tests and benchmarks)."""
        return [c.rule.name for c in self._index.get(resource, ())]

    def is_eligible(self, approvers: list[str], approver: str, requester: str, resource: str) -> bool:
        """Whether `approver` may approve a level named by `approvers` (POLICY.md rules 5-6).

        Words: user:NAME, group:NAME, manager (the requester's), owner (the resource's
        `owners`, whose entries are group:NAME, user:NAME or a bare user name).
        The requester is never eligible; unknown words never match.
        """
        return _is_eligible(approvers, approver, requester, self.resources.get(resource),
                            self.users, self.groups_of)

    def approval_progress(self, decision: Decision, requester: str, resource: str,
                          votes: list[tuple[str, str]]) -> approvals.ApprovalProgress:
        """Rule 5: where a request stands after `votes` ((approver, "approve"|"deny"), in order)."""
        return approvals.progress(decision, requester, votes,
                                  lambda words, who: self.is_eligible(list(words), who, requester, resource))

    def run_tests(self) -> list[testing.TestResult]:
        """Run the set's `tests:`."""
        return testing.run(self.tests, self.decide)


def _internal_deny(version: str, e: Exception) -> Decision:
    text = f"internal error in the policy engine: {type(e).__name__}: {e}"
    return engine.deny(version, "refused: " + text, errors=[text])


def _label_warnings(idx: dict[str, tuple[index.Candidate, ...]], analyses: dict[str, index.Analysis],
                    resources: dict[str, Resource]) -> list[PolicyError]:
    """Rules comparing a label some resources lack: there, their CEL raises and decisions fail closed."""
    missing: dict[tuple[str, str], list[str]] = {}
    rules: dict[str, Rule] = {}
    for res_name, cands in idx.items():
        for cand in cands:
            if not cand.needs_cel:
                continue
            for label in index.missing_labels(analyses[cand.rule.name].resource_preds, resources[res_name]):
                missing.setdefault((cand.rule.name, label), []).append(res_name)
                rules[cand.rule.name] = cand.rule
    out = []
    for (rule_name, label), names in missing.items():
        loc = rules[rule_name].when_loc
        shown = ", ".join(sorted(names)[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
        out.append(PolicyError(loc.file, loc.line, loc.col, "policy.missing_label",
                               f"rule `{rule_name}`: resources without label `{label}` ({shown}) "
                               f"make it fail closed there; guard it with has(resource.labels.{label})"))
    return sorted(out, key=lambda e: (e.file, e.line, e.col))


def _finish(raw: Raw, sink: Sink, source: Path | None, run_tests: bool) -> PolicySet:
    checked = check(raw, sink)
    if sink.errors:
        raise PolicyLoadError(_sorted(sink.errors))
    ps = PolicySet._from_checked(checked, source)
    if run_tests:
        failed = [r for r in ps.run_tests() if not r.passed]
        if failed:
            raise PolicyLoadError([
                PolicyError(r.file, r.line, r.col, "policy.test_failed",
                            f"test `{r.name}` failed: " + "; ".join(r.failures)) for r in failed])
    return ps


def _sorted(errors: list[PolicyError]) -> list[PolicyError]:
    return sorted(dict.fromkeys(errors), key=lambda e: (e.file, e.line, e.col))


def load_policy_set(path: str | Path, *, run_tests: bool = True) -> PolicySet:
    """Load, check and compile a policy file or folder; raise PolicyLoadError listing every problem.

    With `run_tests` (the default, what a server reloading its policy wants) a
    failing policy test refuses the set too.
    """
    p = Path(path)
    sink = Sink()
    if not p.exists():
        raise PolicyLoadError([PolicyError(str(p), 1, 1, "policy.io", "no such file or folder")])
    try:
        raw = read_raw(p, sink)
        return _finish(raw, sink, p, run_tests)
    except (PolicyLoadError, MemoryError):  # MemoryError: the sandbox reports its limit
        raise
    except Exception as e:  # fail closed: the set is refused, the one in force keeps serving
        raise PolicyLoadError([*sink.errors, _internal(str(p), e)]) from None


def load_policy_text(text: str, filename: str = "policies.yaml", *, run_tests: bool = True) -> PolicySet:
    """Like load_policy_set, from text (errors name `filename`)."""
    sink = Sink()
    raw = Raw(files=[filename])
    try:
        read_text(filename, text, raw, sink)
        return _finish(raw, sink, None, run_tests)
    except (PolicyLoadError, MemoryError):
        raise
    except Exception as e:
        raise PolicyLoadError([*sink.errors, _internal(filename, e)]) from None


def _internal(file: str, e: Exception) -> PolicyError:
    if isinstance(e, RecursionError):
        return PolicyError(file, 1, 1, "policy.internal", "policy nested too deeply")
    return PolicyError(file, 1, 1, "policy.internal", f"internal error while checking: {type(e).__name__}: {e}")


def _with_risk(decision: Decision, req: PolicyRequest) -> Decision:
    """The decision carrying the request's risk (POLICY.md: decisions record score and reasons)."""
    return decision if req.risk is None else replace(decision, risk=req.risk.to_json())
