"""Rehearsal memories shared by the replay methods (Replay, DER, ER-ACE, A-GEM, GEM, GDumb, EMA).

Every memory keeps named tensors (``x``, ``y``, ``t`` and any extra field, such as DER's logits) on the
device of the data it was given, and draws its random numbers from the strategy's seeded CPU generator
(so a run is reproducible on any device, and no random draw waits for the accelerator). The inputs are
stored as they were before augmentation; ``sample`` augments the drawn ones anew at every draw, with the
run's augmentation, as Mammoth's buffer applies its ``transform`` in ``get_data``.
"""

from __future__ import annotations

import torch

from engine.augment import InputAugment
from engine.core.hparams import HParam

# van de Ven et al. 2022's memory, offered by every rehearsal method that has ``policy: per_class``:
# a fixed number of samples of each class of each task, so the total grows with the classes seen
MEMORY_PER_CLASS = HParam(int, 100, "policy per_class: samples kept of each class of each task (100: van de "
                          "Ven's Split MNIST budget); total = this x the classes seen", low=1, high=100_000, log=True)


def per_class_bytes(hparams: dict, sample: int, task_classes: int) -> int | None:
    """The bytes a ``per_class`` memory holds after the last task (``task_classes``: the classes of every
    task, counted per task), for ``Strategy.state_bytes``; None for any other policy."""
    if hparams.get("policy") != "per_class":
        return None
    return int(hparams.get("memory_per_class", MEMORY_PER_CLASS.default)) * task_classes * sample



class PerClassMemoryCost:
    """A strategy mix-in: with ``policy: per_class`` its memory costs what ``per_class_bytes`` says;
    otherwise the strategy's own estimate (Replay's, A-GEM's)."""

    @classmethod
    def state_bytes(cls, hparams, weights, sample, n_tasks, task_classes=0):
        per_class = per_class_bytes(hparams, sample, task_classes)
        if per_class is not None:
            return per_class
        return super().state_bytes(hparams, weights, sample, n_tasks, task_classes)


class Memory:
    """Named tensors of equal length; ``sample`` draws a uniform batch (with replacement)."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size = size
        self.generator = generator
        self.data: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.data["y"]) if self.data else 0

    def __getattr__(self, name: str) -> torch.Tensor:  # buffer.x, buffer.y, buffer.logits ...
        data = self.__dict__.get("data") or {}
        if name in data:
            return data[name][: len(self)]
        raise AttributeError(name)

    def sample(self, n: int, augment: InputAugment | None = None) -> tuple[torch.Tensor, ...]:
        """``n`` samples (at most as many as held) drawn uniformly, each field in the order added; the
        inputs (``x``) through ``augment``, drawing from the memory's generator."""
        idx = torch.randint(len(self), (min(n, len(self)),), generator=self.generator)
        idx = idx.to(self.data["y"].device, non_blocking=True)
        drawn = {k: v[idx] for k, v in self.data.items()}
        if augment:
            drawn["x"] = augment(drawn["x"], self.generator)
        return tuple(drawn.values())


class ReservoirBuffer(Memory):
    """A fixed-size memory fed every step by reservoir sampling (Vitter, 1985): each sample of the
    stream seen so far is held with the same probability ``size / seen``."""

    def __init__(self, size: int, generator: torch.Generator):
        super().__init__(size, generator)
        self.seen = 0
        self.filled = 0

    def __len__(self) -> int:
        return self.filled

    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, **extra: torch.Tensor) -> None:
        fields = {"x": x, "y": y, "t": t, **extra}
        if not self.data:  # allocated once, on the data's device, with one spare row (below)
            self.data = {k: torch.empty((self.size + 1, *v.shape[1:]), dtype=v.dtype, device=v.device)
                         for k, v in fields.items()}
        n = len(y)
        free = min(max(self.size - self.seen, 0), n)  # the first samples fill the empty slots
        if free:
            for k, v in fields.items():
                self.data[k][self.seen:self.seen + free] = v[:free]
        if free < n:  # the rest replace a uniform slot of [0, seen) when it falls inside the memory;
            # the others are written to the spare row, never read: no nonzero(), no sync, few small ops
            seen = torch.arange(self.seen + free + 1, self.seen + n + 1, dtype=torch.float64)
            draw = (torch.rand(n - free, generator=self.generator, dtype=torch.float64) * seen).long()
            slot = draw.clamp_(max=self.size)
            # a slot drawn twice in one call keeps the later sample, as the one-at-a-time algorithm does
            # (the earlier go to the spare row): an index_put with repeated indices keeps an arbitrary
            # one, which differed between runs of the same seed
            order = torch.arange(len(slot))
            last = torch.full((self.size + 1,), -1, dtype=torch.long).scatter_reduce_(0, slot, order, "amax")
            slot = torch.where(last[slot] == order, slot, self.size).to(self.data["y"].device, non_blocking=True)
            for k, v in fields.items():
                self.data[k][slot] = v[free:]
        self.seen += n
        self.filled = min(self.seen, self.size)


class BalancedBuffer(Memory):
    """A memory filled at each task's end and split equally among groups, the classes (``by="class"``)
    or the experiences (``by="experience"``) seen so far, as Avalanche's ``ClassBalancedBuffer`` and
    ``ExperienceBalancedBuffer``: each group keeps a uniform random subset of its samples, the first
    groups one more when the size does not divide. With ``per_group`` every group keeps that many
    instead (A-GEM's and GEM's memory per task; van de Ven's memory per class, ``by="task_class"``:
    a class of each task is its own group, so a domain-incremental class seen in 5 tasks has 5)."""

    def __init__(self, size: int, by: str, generator: torch.Generator, per_group: int | None = None):
        super().__init__(size, generator)
        if by not in ("class", "experience", "task_class"):
            raise ValueError(f"by = {by!r}: must be class, experience or task_class")
        self.by = by
        self.per_group = per_group
        self.experiences = 0

    def group_lengths(self, n_groups: int) -> list[int]:
        if self.per_group is not None:
            return [self.per_group] * n_groups
        lengths = [self.size // n_groups] * n_groups
        for i in range(self.size - sum(lengths)):
            lengths[i] += 1
        return lengths

    def update(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, **extra: torch.Tensor) -> None:
        """Add one experience's data and cut every group back to its share."""
        self.experiences += 1
        new = {"x": x, "y": y, "t": t, **extra,
               "group": self.group_of(y, t),
               "priority": torch.rand(len(y), generator=self.generator).to(y.device)}
        data = {k: torch.cat([self.data[k], v]) if self.data else v for k, v in new.items()}
        groups = torch.unique(data["group"]).tolist()
        keep = []
        for g, length in zip(groups, self.group_lengths(len(groups))):
            idx = (data["group"] == g).nonzero().squeeze(1)
            keep.append(idx[data["priority"][idx].argsort(descending=True)[:length]])
        keep = torch.cat(keep)
        self.data = {k: v[keep] for k, v in data.items()}

    def group_of(self, y: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if self.by == "class":
            return y
        if self.by == "task_class":
            return t.to(y.device, torch.long) * 2 ** 32 + y  # one key a (task, class)
        return torch.full_like(y, self.experiences - 1)

    def sample(self, n: int, augment: InputAugment | None = None) -> tuple[torch.Tensor, ...]:
        return super().sample(n, augment)[:-2]  # without the bookkeeping fields

    def groups(self) -> list[tuple[torch.Tensor, ...]]:
        """Every group's samples (GEM: one memory a past task), fields as ``sample`` gives them."""
        fields = [k for k in self.data if k not in ("group", "priority")]
        return [tuple(self.data[k][self.data["group"] == g] for k in fields)
                for g in torch.unique(self.data["group"]).tolist()]


class GreedyClassBalancedBuffer(Memory):
    """GDumb's sampler (Prabhu et al., 2020): a sample is stored while its class holds fewer than
    ``size / classes seen``; once full, a random sample of the largest class makes room for it."""

    def __init__(self, size: int, generator: torch.Generator):
        super().__init__(size, generator)
        self.slots: dict[int, list[int]] = {}  # class -> its slots

    def update(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        fields = {"x": x, "y": y, "t": t}
        if not self.data:
            self.data = {k: torch.empty((0, *v.shape[1:]), dtype=v.dtype, device=v.device) for k, v in fields.items()}
        labels = y.tolist()
        order = torch.randperm(len(labels), generator=self.generator).tolist()  # the stream's order
        slot_of, src_of = [], []
        filled = len(self)
        for i in order:
            c = labels[i]
            self.slots.setdefault(c, [])
            if len(self.slots[c]) >= self.size / len(self.slots):
                continue
            if filled < self.size:
                slot, filled = filled, filled + 1
            else:
                largest = max(self.slots, key=lambda k: len(self.slots[k]))
                victims = self.slots[largest]
                slot = victims.pop(int(torch.randint(len(victims), (1,), generator=self.generator)))
            self.slots[c].append(slot)
            slot_of.append(slot)
            src_of.append(i)
        grow = filled - len(self)
        for k, v in fields.items():
            if grow:
                self.data[k] = torch.cat([self.data[k], v.new_empty((grow, *v.shape[1:]))])
            if slot_of:
                self.data[k][torch.tensor(slot_of, device=v.device)] = v[torch.tensor(src_of, device=v.device)]
