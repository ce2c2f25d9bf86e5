import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Strategy


@torch.no_grad()
def encode(module, x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """The features of ``x`` in evaluation mode (no batch-norm statistics move), in chunks."""
    was_training = module.training
    module.eval()
    feats = torch.cat([module.features(x[i:i + chunk]) for i in range(0, len(x), chunk)])
    module.train(was_training)
    return feats


@torch.no_grad()
def class_means(features: torch.Tensor, y: torch.Tensor, classes) -> dict[int, torch.Tensor]:
    return {c: features[y == c].mean(0) for c in classes}


class FeTrIL(Strategy):
    """FeTrIL (Petit et al., 2023): the network trains normally on the first task, then its encoder
    is frozen. At each later task, pseudo-features of every old class c are the features of one new
    class n translated by the difference of their means (f + mu_c - mu_n), and the linear head trains
    on real new features and pseudo old ones, in the same number per class. The paper fits a linear
    SVM on them anew at each task; here the head is reset and trains with cross-entropy, step by step, like every strategy."""

    name = "fetril"
    title = "FeTrIL"
    description = "Frozen encoder after task 1; old classes as new-class features shifted to the old class means."
    paper = "Petit, Popescu, Schindler, Picard, Delezoide, 2023: FeTrIL: Feature Translation for Exemplar-Free Class-Incremental Learning"
    settings = ("class",)
    hparams = {
        "pairing": HParam(str, "similar", "which new class is translated to an old one: similar (the most "
                          "similar mean by cosine, the paper's FeTrIL^1, default) or random",
                          choices=("similar", "random")),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.means: dict[int, torch.Tensor] = {}  # class -> its mean feature (frozen encoder)
        self.pseudo_x = self.pseudo_y = None

    def before_task(self, module, experience):
        if not self.means:
            return  # the first task trains the whole network
        feats = encode(module, experience.x)
        new = sorted(set(experience.y.tolist()) - set(self.means))
        new_means = class_means(feats, experience.y, new)
        old = sorted(self.means)
        self.pseudo_x, self.pseudo_y = self.pseudo_features(feats, experience.y, new_means, old)
        self.n_new = len(new)
        self.means.update(new_means)
        module.head.reset_parameters()  # the paper fits its classifier anew at each task

    def pseudo_features(self, feats, y, new_means: dict, old: list[int]):
        """Each old class c gets the features of one new class n, moved by mu_c - mu_n: their mean is mu_c."""
        new = list(new_means)
        stacked = torch.stack([new_means[n] for n in new])
        xs, ys = [], []
        for c in old:
            if self.pairing == "similar":
                n = new[int(F.cosine_similarity(stacked, self.means[c].unsqueeze(0)).argmax())]
            else:
                n = new[int(torch.randint(len(new), (1,), generator=self.generator))]
            xs.append(feats[y == n] + (self.means[c] - new_means[n]))
            ys.append(torch.full(((y == n).sum(),), c, dtype=y.dtype, device=y.device))
        return torch.cat(xs), torch.cat(ys)

    def training_loss(self, module, x, y, t):
        if self.pseudo_x is None:
            return module.loss(x, y, t)
        n_pseudo = max(1, round(len(y) * (len(self.means) - self.n_new) / self.n_new))  # as many per class
        idx = torch.randint(len(self.pseudo_y), (n_pseudo,), generator=self.generator).to(y.device)
        feats = torch.cat([encode(module, x), self.pseudo_x[idx]])
        return F.cross_entropy(module.head(feats), torch.cat([y, self.pseudo_y[idx]]))

    def after_task(self, module, experience):
        if self.means:
            return
        module.net.features.requires_grad_(False)  # later optimizers get the head only
        feats = encode(module, experience.x)
        self.means = class_means(feats, experience.y, sorted(set(experience.y.tolist())))
