import copy

import torch
import torch.nn.functional as F

from engine.core.hparams import HParam
from engine.strategies.base import Experience, Strategy
from engine.strategies.buffers import MEMORY_PER_CLASS, per_class_bytes


def herding(features: torch.Tensor, m: int) -> torch.Tensor:
    """iCaRL's exemplar selection: the indices, in order, of the ``m`` samples whose running feature mean
    stays closest to the class mean (each pick minimises the distance of the mean so far)."""
    mean = features.mean(0)
    total = torch.zeros_like(mean)
    free = torch.ones(len(features), dtype=torch.bool, device=features.device)
    chosen = []
    for k in range(1, min(m, len(features)) + 1):
        distance = (mean - (total + features) / k).norm(dim=1).masked_fill(~free, float("inf"))
        i = int(distance.argmin())
        chosen.append(i)
        free[i] = False
        total += features[i]
    return torch.tensor(chosen, dtype=torch.long, device=features.device)


class NearestMeanOfExemplars(torch.nn.Module):
    """iCaRL's classifier: the score of class c is minus the squared distance between the feature of x
    and c's mean feature (both normalised, or both raw: the strategy's ``ncm_features``); classes with
    no mean yet score the lowest number."""

    def __init__(self, strategy: "ICaRL", module):
        super().__init__()
        self.strategy, self.module = strategy, module

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        means, known = self.strategy.class_means(self.module)
        scores = -torch.cdist(self.strategy.embed(self.module, x), means).pow(2)
        return scores.masked_fill(~known, torch.finfo(scores.dtype).min)


class ICaRL(Strategy):
    """iCaRL (Rebuffi et al., 2017), class-incremental: it trains on the task's data and the exemplars
    (``exemplars_joined_to``: to each batch, a batch drawn from them; or to the task's dataset, as the
    paper, Mammoth, PyCIL and van de Ven's code do), with a sigmoid binary cross-entropy over the
    classes seen so far whose targets for the old classes are the previous model's sigmoid outputs
    (distillation; mean over outputs, as Avalanche). After each task, ``memory_size / classes seen``
    exemplars a class are kept (``policy: per_class``: ``memory_per_class`` each, van de Ven's budget):
    old classes' sets are cut to their first ones, new classes' chosen by herding. Evaluation classifies
    by the nearest mean of exemplars, with the current features; the end-of-task evaluation comes after the exemplars are chosen
    (as Mammoth's); during a task, its classes, with no exemplars yet, use the mean of their training
    samples. The paper normalises the features for herding and for the class means; Mammoth's iCaRL
    (2020) uses them raw: ``ncm_features``."""

    name = "icarl"
    title = "iCaRL"
    description = "Herding exemplars, sigmoid distillation and a nearest-mean-of-exemplars classifier."
    paper = "Rebuffi et al., 2017. iCaRL: Incremental Classifier and Representation Learning"
    settings = ("class",)
    hparams = {
        "memory_size": HParam(int, 200, "policy class_balanced: exemplars in all, split equally among the classes "
                              "seen (the paper keeps 2000 for CIFAR-100; 200 matches Replay's default)",
                              low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 32, "exemplars_joined_to batch: exemplars added to each training batch",
                                    low=1, high=4096),
        "exemplars_joined_to": HParam(str, "batch", "how training sees the exemplars: batch, replay_batch_size of "
                                      "them drawn for each training batch (CL Lab's first iCaRL; the default: stored "
                                      "runs keep their meaning); dataset, joined to the task's training data, each seen once an "
                                      "epoch (the paper, Mammoth, PyCIL, van de Ven et al.; 1.6% of a Seq-MNIST "
                                      "task's samples at 200)", choices=("batch", "dataset")),
        "policy": HParam(str, "class_balanced", "class_balanced: memory_size exemplars in all, split equally among "
                         "the classes seen (the paper, Mammoth; the default); per_class: memory_per_class of each "
                         "class, the total growing with the classes (van de Ven et al., 2022)",
                         choices=("class_balanced", "per_class")),
        "memory_per_class": MEMORY_PER_CLASS,
        "ncm_features": HParam(str, "normalised", "features for herding and the nearest-mean classifier: "
                               "normalised (L2, the paper; the default) or raw (unnormalised, Mammoth's iCaRL)",
                               choices=("normalised", "raw")),
    }

    @classmethod
    def state_bytes(cls, hparams, weights, sample, n_tasks, task_classes=0):
        per_class = per_class_bytes(hparams, sample, task_classes)
        exemplars = per_class if per_class is not None else int(hparams.get("memory_size", 200)) * sample
        return exemplars + weights  # and the previous model, the teacher

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.generator = torch.Generator().manual_seed(self.seed)
        self.exemplars: dict[int, torch.Tensor] = {}  # class -> its exemplars, in herding order
        self.teacher = None

    def setup(self, module, scenario):
        super().setup(module, scenario)
        self.task_classes = [task.classes for task in scenario.tasks]
        self.n_classes = scenario.n_classes
        self.classifier = NearestMeanOfExemplars(self, module)

    def before_task(self, module, experience):
        self.current = experience
        device = experience.x.device
        old = list(self.exemplars)
        new = sorted(c for classes in self.task_classes[:experience.task] for c in classes if c not in self.exemplars)
        self.order = torch.tensor(old + new, dtype=torch.long, device=device)  # the classes seen, old ones first
        self.n_old = len(old)
        self.position = torch.full((self.n_classes,), -1, dtype=torch.long, device=device)
        self.position[self.order] = torch.arange(len(self.order), device=device)

    def exemplars_a_class(self, n_seen: int) -> int:
        """Exemplars kept of each class once ``n_seen`` classes are seen."""
        return self.memory_per_class if self.policy == "per_class" else self.memory_size // n_seen

    def train_data(self, experience):
        """exemplars_joined_to dataset: the task's samples and the exemplars, one dataset (the paper's union)."""
        if self.exemplars_per_batch or not self.exemplars:
            return experience
        memory = Experience(experience.task, self.memory_x, self.memory_y, self.memory_t.to(experience.t.device))
        return Experience.join([experience, memory], label=experience.label)

    def experiences(self, scenario):
        self.task_classes = [task.classes for task in scenario.tasks]  # known before setup: the plan needs them
        return super().experiences(scenario)

    def epoch_sizes(self, experiences):
        """exemplars_joined_to dataset: each task's samples and the exemplars of the classes before it
        (exact unless a class has fewer samples than its share, then it keeps them all)."""
        sizes = super().epoch_sizes(experiences)
        if self.exemplars_per_batch:
            return sizes
        for k in range(1, len(sizes)):
            seen = sum(len(classes) for classes in self.task_classes[:k])
            sizes[k] += self.exemplars_a_class(seen) * seen
        return sizes

    @property
    def exemplars_per_batch(self) -> bool:
        return self.exemplars_joined_to == "batch"

    def training_loss(self, module, x, y, t):
        if self.exemplars and self.exemplars_per_batch:
            idx = torch.randint(len(self.memory_y), (self.replay_batch_size,), generator=self.generator)
            idx = idx.to(x.device)
            x, y = torch.cat([x, self.memory_x[idx]]), torch.cat([y, self.memory_y[idx]])
        logits = module(x)[:, self.order]
        target = F.one_hot(self.position[y], len(self.order)).to(logits.dtype)
        if self.teacher is not None:  # distillation: the old classes' targets are the old model's outputs
            with torch.no_grad():
                target[:, :self.n_old] = torch.sigmoid(self.teacher(x)[:, self.order[:self.n_old]])
        return F.binary_cross_entropy_with_logits(logits, target)

    def after_task(self, module, experience):
        per_class = self.exemplars_a_class(len(self.order))
        for c in self.exemplars:
            self.exemplars[c] = self.exemplars[c][:per_class]
        was_training = module.training
        module.eval()
        with torch.no_grad():
            for c in experience.y.unique().tolist():
                x = experience.x[experience.y == c]
                self.exemplars[c] = x[herding(self.embed(module, x), per_class)]
        module.train(was_training)
        self.memory_x = torch.cat(list(self.exemplars.values()))
        self.memory_y = torch.cat([torch.full((len(v),), c, device=v.device) for c, v in self.exemplars.items()])
        task_of = {c: k for k, classes in enumerate(self.task_classes) for c in classes}
        self.memory_t = torch.tensor([task_of[c] for c in self.memory_y.tolist()], dtype=torch.long)
        self.teacher = copy.deepcopy(module.net).eval().requires_grad_(False)

    def embed(self, module, x: torch.Tensor) -> torch.Tensor:
        """The features herding and the classifier compare: L2-normalised (the paper) or raw (Mammoth)."""
        features = module.features(x)
        return F.normalize(features, dim=1) if self.ncm_features == "normalised" else features

    def class_means(self, module) -> tuple[torch.Tensor, torch.Tensor]:
        """Every class's mean feature (n_classes x d; normalised again with normalised features, as
        the paper's) and which classes have one."""
        x = [self.current.x] + ([self.memory_x] if self.exemplars else [])
        y = [self.current.y] + ([self.memory_y] if self.exemplars else [])
        x, y = torch.cat(x), torch.cat(y)
        from_memory = torch.zeros(len(y), dtype=torch.bool, device=y.device)
        from_memory[len(self.current.y):] = True
        has_exemplars = torch.zeros(self.n_classes, dtype=torch.bool, device=y.device)
        has_exemplars[list(self.exemplars)] = True
        use = from_memory | ~has_exemplars[y]  # exemplars where a class has them, its training data otherwise
        features = self.embed(module, x[use])
        y = y[use]
        sums = torch.zeros(self.n_classes, features.shape[1], device=y.device).index_add_(0, y, features)
        counts = torch.bincount(y, minlength=self.n_classes)
        means = sums / counts.clamp(min=1).unsqueeze(1)
        return (F.normalize(means, dim=1) if self.ncm_features == "normalised" else means), counts > 0

    def eval_model(self, module):
        return self.classifier
