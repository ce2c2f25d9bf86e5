"""Training augmentation on a batch of image tensors, on the training device, vectorised (no loop over
samples). ``train.augment``: ``none``, or ``default``: the dataset's suggested augmentations
(``DatasetInfo.augment``; none for rows and the MNIST family), as the CL literature trains them:

- ``crop``: pad 4 pixels of zeros on every side, then take a random crop of the original size
  (torchvision's ``RandomCrop(size, padding=4)``, Mammoth's CIFAR and Tiny-ImageNet pipelines);
- ``flip``: mirror left-right with probability 1/2 (``RandomHorizontalFlip``).

The random draws (offsets, coin flips: a few numbers a sample) come from the run's generator on the
CPU and move to the batch's device, where the gather index is built, so a seed gives the same augmentation on any device. They are
applied to pixels in [0, 1] before normalisation, so the padding is black as in torchvision.
"""

from __future__ import annotations

import torch

CROP_PADDING = 4
AUGMENTATIONS = ("crop", "flip")


def crop_and_flip(x: torch.Tensor, generator: torch.Generator, crop: bool = True, flip: bool = True,
                  padding: int = CROP_PADDING) -> torch.Tensor:
    """(B, C, H, W) -> (B, C, H, W): each sample a random window of itself padded with zeros (crop),
    mirrored left-right with probability 1/2 (flip). Both are one ``gather`` over the flattened
    padded images: advanced indexing, or a flip then a ``where``, cost several times more on a CPU."""
    b, c, h, w = x.shape
    padding = padding if crop else 0
    wide = w + 2 * padding
    padded = torch.nn.functional.pad(x, (padding,) * 4).flatten(2) if padding else x.flatten(2)  # (B, C, H'W')
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


def augment(x: torch.Tensor, names: tuple[str, ...], generator: torch.Generator) -> torch.Tensor:
    """Apply ``names`` (a subset of AUGMENTATIONS): crop, then flip, in one pass."""
    if not ("crop" in names or "flip" in names):
        return x
    return crop_and_flip(x, generator, crop="crop" in names, flip="flip" in names)


def augmentations(config) -> tuple[str, ...]:
    """What a run (a validated ``RunConfig``) augments with."""
    from engine.datasets import DATASET_INFO

    if config.train.augment == "none":
        return ()
    return DATASET_INFO[config.scenario.dataset].augment
