import torch

from engine.strategies.base import HParam, Strategy


class ReservoirBuffer:
    """A fixed-size memory filled by reservoir sampling (Vitter, 1985): every sample seen so far
    has the same chance to be in it."""

    def __init__(self, size: int, generator: torch.Generator):
        self.size = size
        self.seen = 0
        self.generator = generator
        self.x = self.y = self.t = None

    def __len__(self) -> int:
        return min(self.seen, self.size)

    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        if self.x is None:
            self.x = torch.empty((self.size, *x.shape[1:]), dtype=x.dtype, device=x.device)  # on the run's device
            self.y = torch.empty(self.size, dtype=y.dtype, device=y.device)
            self.t = torch.empty(self.size, dtype=t.dtype, device=t.device)
        n = x.shape[0]
        seen = self.seen + torch.arange(1, n + 1)  # how many samples seen counting each one
        draw = (torch.rand(n, generator=self.generator) * seen).long()  # uniform in [0, seen)
        fill = seen <= self.size
        slot = torch.where(fill, seen - 1, draw)
        keep = fill | (draw < self.size)
        slot, src = slot[keep].to(x.device), keep.nonzero().squeeze(1).to(x.device)  # the draws stay on the CPU
        self.x[slot], self.y[slot], self.t[slot] = x[src], y[src], t[src]
        self.seen += n

    def sample(self, n: int):
        idx = torch.randint(len(self), (min(n, len(self)),), generator=self.generator).to(self.x.device)
        return self.x[idx], self.y[idx], self.t[idx]


class Replay(Strategy):
    """Experience replay (Chaudhry et al., 2019, "On tiny episodic memories"): each step trains on the
    batch joined with a batch drawn from a reservoir buffer of past samples."""

    name = "replay"
    title = "Experience Replay"
    description = "Keeps a reservoir buffer of past samples and mixes a batch of them into every step."
    hparams = {
        "buffer_size": HParam(int, 200, "samples kept in the reservoir buffer", low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 32, "buffer samples added to each training batch", low=1, high=4096),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.replay_buffer = ReservoirBuffer(self.buffer_size, self.generator)

    def training_loss(self, module, x, y, t):
        batch = (x, y, t)
        if len(self.replay_buffer):
            bx, by, bt = self.replay_buffer.sample(self.replay_batch_size)
            batch = (torch.cat([x, bx]), torch.cat([y, by]), torch.cat([t, bt]))
        loss = module.loss(*batch)
        self.replay_buffer.add(x, y, t)
        return loss
