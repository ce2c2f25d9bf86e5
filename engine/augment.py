"""Training augmentation on a batch of image tensors, on the training device, vectorised (no loop over
samples). ``train.augment``: ``none``, or ``default``: the dataset's suggested augmentations
(``DatasetInfo.augment``; none for rows and the MNIST family), as the CL literature trains them:

- ``crop``: pad 4 pixels of zeros on every side, then take a random crop of the original size
  (torchvision's ``RandomCrop(size, padding=4)``, Mammoth's CIFAR and Tiny-ImageNet pipelines);
- ``flip``: mirror left-right with probability 1/2 (``RandomHorizontalFlip``).

The random draws (offsets, coin flips: a few numbers a sample) come from the run's generator on the
CPU and move to the batch's device, so a seed gives the same augmentation on any device. They are
applied to pixels in [0, 1] before normalisation, so the padding is black as in torchvision.
"""

from __future__ import annotations

import torch

CROP_PADDING = 4
AUGMENTATIONS = ("crop", "flip")


def random_crop(x: torch.Tensor, generator: torch.Generator, padding: int = CROP_PADDING) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): each sample a random window of itself padded with zeros."""
    b, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (b, 2), generator=generator).to(x.device)
    rows = (offsets[:, 0:1] + torch.arange(h, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
    cols = (offsets[:, 1:2] + torch.arange(w, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability 1/2."""
    flip = (torch.rand(x.shape[0], generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(3), x)


def augment(x: torch.Tensor, names: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """Apply ``names`` (a subset of AUGMENTATIONS) in the usual order: crop, then flip."""
    if "crop" in names:
        x = random_crop(x, generator)
    if "flip" in names:
        x = random_flip(x, generator)
    return x


def augmentations(config) -> tuple[str, ...]:
    """What a run (a validated ``RunConfig``) augments with."""
    from engine.datasets import DATASET_INFO

    if config.train.augment == "none":
        return ()
    return DATASET_INFO[config.scenario.dataset].augment
