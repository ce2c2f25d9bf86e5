from engine.models.resnet18 import ResNet18
from engine.core.hparams import HParam


class ResNet18Reduced(ResNet18):
    """The reduced ResNet-18 of GEM (Lopez-Paz & Ranzato, 2017), A-GEM and Mammoth: ResNet-18 with a
    first-stage width of 20 instead of 64 (about 1.1 M parameters for 10 classes)."""

    name = "resnet18_reduced"
    title = "Reduced ResNet-18 (nf = 20, as GEM / A-GEM / Mammoth)"
    hparams = {"nf": HParam(int, 20, "width of the first stage (the stages are nf, 2nf, 4nf, 8nf)", low=1, high=512)}

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, nf: int = 20):
        super().__init__(input_shape, n_classes, nf)
