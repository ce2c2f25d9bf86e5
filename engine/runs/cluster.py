"""The cluster the lab's runs train on, as one table built once and shown on the Home page (``records``)
and by ``python -m engine cluster`` (``text``): each node, whether it is alive, its CPUs and GPUs, and
the lab's runs training on it now (``runs.node``, which a run's start sets)."""

from __future__ import annotations

from dataclasses import dataclass

from store import queue

COLUMNS = ["node", "state", "CPUs", "GPUs", "memory (GB)", "runs training"]


def node_label(ip: str, node_id: str) -> str:
    """How a run's row names its node: its IP and the first 12 hex digits of Ray's node id."""
    return f"{ip} {node_id[:12]}"


def node_rows(nodes: list[dict]) -> list[dict]:
    """``ray.nodes()`` as {node, alive, cpus, gpus, memory_gb}, the live nodes first."""
    rows = []
    for n in nodes:
        resources = n.get("Resources") or {}
        rows.append({"node": node_label(n.get("NodeManagerAddress", "?"), n.get("NodeID", "")),
                     "alive": bool(n.get("Alive")), "cpus": resources.get("CPU", 0.0),
                     "gpus": resources.get("GPU", 0.0), "memory_gb": resources.get("memory", 0.0) / 1e9})
    return sorted(rows, key=lambda r: (not r["alive"], r["node"]))


@dataclass
class ClusterView:
    address: str
    rows: list[list]

    @property
    def summary(self) -> str:
        alive = [r for r in self.rows if r[1] == "alive"]
        return (f"Ray cluster at {self.address}: {len(alive)} of {len(self.rows)} node(s) alive, "
                f"{sum(r[2] for r in alive):g} CPUs, {sum(r[3] for r in alive):g} GPUs, "
                f"{sum(r[5] for r in self.rows)} run(s) training")

    def records(self) -> list[dict]:
        return [dict(zip(COLUMNS, row)) for row in self.rows]

    def text(self) -> str:
        cells = [COLUMNS] + [[f"{v:g}" if isinstance(v, float) else str(v) for v in row] for row in self.rows]
        width = [max(len(r[i]) for r in cells) for i in range(len(COLUMNS))]
        lines = [self.summary]
        for r in cells:
            lines.append("  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, width))).rstrip())
        return "\n".join(lines)


def cluster_view(address: str, nodes: list[dict], store=None) -> ClusterView:
    """The table of ``nodes`` (``node_rows``), with the runs of ``store`` training on each (0 without a store)."""
    training = queue.running_runs_by_node(store) if store is not None else {}
    rows = [[n["node"], "alive" if n["alive"] else "dead", n["cpus"], n["gpus"], round(n["memory_gb"], 1),
             training.get(n["node"], 0)] for n in nodes]
    return ClusterView(address, rows)
