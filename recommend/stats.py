"""Per-group statistics of used time: per resource, per kind and environment,
per kind/environment/task, per kind. They back the cold-start fallback and the
"similar requests used about N min" part of an explanation."""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from recommend.history import HistoryRow

SECTIONS = ("resource", "kind_env", "kind_env_task", "kind", "all")


@dataclass(frozen=True)
class GroupStats:
    """How many grants, and their median and 80th percentile of used minutes."""

    n: int
    p50: float
    p80: float

    @classmethod
    def of(cls, values: Iterable[float]) -> GroupStats:
        arr = np.fromiter(values, dtype=np.float64)
        if arr.size == 0:
            return cls(0, float("nan"), float("nan"))
        p50, p80 = np.percentile(arr, [50, 80])
        return cls(int(arr.size), round(float(p50), 2), round(float(p80), 2))


StatsTable = dict[str, dict[str, GroupStats]]


def group_keys(kind: str, env: str, task: str, resource: str) -> dict[str, str]:
    """The key of a request in each section."""
    return {"resource": resource, "kind_env": f"{kind}/{env}", "kind_env_task": f"{kind}/{env}/{task}",
            "kind": kind, "all": "*"}


def summarize(rows: Iterable[HistoryRow]) -> StatsTable:
    """Statistics of every group present in `rows`."""
    values: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SECTIONS}
    for row in rows:
        keys = group_keys(row.kind, row.labels.get("env", ""), row.task, row.resource)
        for section, key in keys.items():
            values[section][key].append(row.used_minutes)
    return {s: {k: GroupStats.of(v) for k, v in sorted(values[s].items())} for s in SECTIONS}


def stats_to_json(table: StatsTable) -> dict[str, Any]:
    return {s: {k: asdict(v) for k, v in groups.items()} for s, groups in table.items()}


def stats_from_json(obj: Mapping[str, Any]) -> StatsTable:
    return {s: {k: GroupStats(int(v["n"]), float(v["p50"]), float(v["p80"])) for k, v in obj.get(s, {}).items()}
            for s in SECTIONS}
