"""Training augmentation on a batch of image tensors, on the training device, vectorised (no loop over
samples). ``train.augment``: ``none``, or ``default``: the dataset's suggested augmentations
(``DatasetInfo.augment``; none for rows and the MNIST family), as the CL literature trains them:

- ``crop``: pad 4 pixels of zeros on every side, then take a random crop of the original size
  (torchvision's ``RandomCrop(size, padding=4)``, Mammoth's CIFAR and Tiny-ImageNet pipelines);
- ``flip``: mirror left-right with probability 1/2 (``RandomHorizontalFlip``).

The random draws (offsets, coin flips: a few numbers a sample) come from the run's generator on the
CPU and move to the batch's device, where the gather index is built, so a seed gives the same augmentation on any device.
They are applied to normalised inputs with the padding filled with the value black takes after normalisation
(``fill``), which gives exactly what padding pixels in [0, 1] with zeros and normalising after would
(torchvision's order): both steps are per-element. So the batch before augmentation is at hand too, and
rehearsal methods store those raw inputs and augment the replayed ones each time they are drawn, as
Mammoth's buffer applies its ``transform`` at every draw (``InputAugment``).
"""

from __future__ import annotations

import torch

CROP_PADDING = 4
AUGMENTATIONS = ("crop", "flip")


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, crop: bool = True, flip: bool = True,
                  padding: int = CROP_PADDING, fill: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): each sample a random window of itself padded with zeros, or with
    ``fill`` (one value a channel), (crop), mirrored left-right with probability 1/2 (flip). Both are
    one ``gather`` over the flattened padded images: advanced indexing, or a flip then a ``where``, cost
    several times more on a CPU."""
    b, c, h, w = x.shape
    padding = padding if crop else 0
    wide = w + 2 * padding
    if padding and fill is not None:
        padded = fill.to(x.device, x.dtype).view(1, c, 1, 1).expand(b, c, h + 2 * padding, wide).clone()
        padded[:, :, padding:padding + h, padding:wide - padding] = x
        padded = padded.flatten(2)  # (B, C, H'W')
    else:
        padded = torch.nn.functional.pad(x, (padding,) * 4).flatten(2) if padding else x.flatten(2)
    dev = x.device  # draws on the CPU (the run's generator), a few numbers a sample; the index built on the device
    offsets = (torch.randint(0, 2 * padding + 1, (b, 2), generator=generator) if crop
               else torch.zeros(b, 2, dtype=torch.long)).to(dev)
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip:
        mirrored = (torch.rand(b, generator=generator) < 0.5).to(dev)
        cols = torch.where(mirrored[:, None], cols.flip(1), cols)
    rows = offsets[:, 0:1] + torch.arange(h, device=dev)  # (B, H)
    cols = offsets[:, 1:2] + cols                          # (B, W)
    index = (rows[:, :, None] * wide + cols[:, None, :]).flatten(1)  # (B, H*W) positions in the padded image
    return padded.gather(2, index[:, None, :].expand(b, c, h * w)).view(b, c, h, w)


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    return crop_and_flip(x, generator, crop=True, flip=False, padding=padding)


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return crop_and_flip(x, generator, crop=False, flip=True)


def augment(x: torch.Tensor, names: tuple[str, ...], generator: torch.Generator,
            fill: torch.Tensor | None = None) -> torch.Tensor:
    """Apply ``names`` (a subset of AUGMENTATIONS): crop (padding with ``fill``, zeros if None), then
    flip, in one pass."""
    if not ("crop" in names or "flip" in names):
        return x
    return crop_and_flip(x, generator, crop="crop" in names, flip="flip" in names, fill=fill)


class InputAugment:
    """A run's training augmentation on prepared (normalised) inputs: ``names`` (none: the inputs
    unchanged) with the padding ``fill`` (black after normalisation, one value a channel; None: zeros).
    The training loop applies it to each batch, and gives it to the strategy (``Strategy.augment``),
    whose rehearsal memory stores raw inputs and applies it to the replayed ones at every draw."""

    def __init__(self, names: tuple[str, ...] = (), fill: torch.Tensor | None = None):
        self.names = tuple(names)
        self.fill = None if fill is None else fill.detach().cpu()

    def __bool__(self) -> bool:
        return bool(self.names)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if not self.names or x.dim() != 4:  # rows are never augmented
            return x
        return augment(x, self.names, generator, self.fill)


def augmentations(config) -> tuple[str, ...]:
    """What a run (a validated ``RunConfig``) augments with."""
    from engine.datasets import DATASET_INFO

    if config.train.augment == "none":
        return ()
    return DATASET_INFO[config.scenario.dataset].augment
