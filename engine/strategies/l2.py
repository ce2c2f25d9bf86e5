from engine.core.hparams import HParam
from engine.strategies.base import Strategy
from engine.strategies.regularization import quadratic_penalty, snapshot


class L2(Strategy):
    """An L2 penalty to the weights as they were after the previous task, every weight alike: EWC with
    the Fisher replaced by 1 (the baseline of Kirkpatrick et al., 2017). Loss + 0.5 x lambda x
    ||theta - theta*||^2 (0.5, as EWC's default convention)."""

    name = "l2"
    title = "L2 to the previous weights"
    description = "Pulls every weight toward its value after the previous task, all alike."
    paper = "Kirkpatrick et al., 2017: Overcoming catastrophic forgetting in neural networks (its L2 baseline)"
    hparams = {
        "l2_lambda": HParam(float, 1.0, "strength of the penalty (loss + 0.5 lambda ||theta - theta*||^2, "
                            "EWC's per_sample convention)", low=0.0, high=1e6, log=True),
    }

    def __init__(self, **hparams):
        super().__init__(**hparams)
        self.optimum = None

    def training_loss(self, module, x, y, t):
        loss = module.loss(x, y, t)
        if self.optimum is not None:
            ones = {n: 1.0 for n in self.optimum}
            loss = loss + 0.5 * self.l2_lambda * quadratic_penalty(module.net, [(ones, self.optimum)])
        return loss

    def after_task(self, module, experience):
        if not self.is_last(experience):
            self.optimum = snapshot(module.net)
