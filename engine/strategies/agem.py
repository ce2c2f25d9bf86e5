from engine.core.hparams import HParam
from engine.strategies.buffers import MEMORY_PER_CLASS, BalancedBuffer, PerClassMemoryCost
from engine.strategies.gem import GEM, current_gradient, loss_gradient, set_gradient, trainable


class AGEM(PerClassMemoryCost, GEM):
    """Averaged GEM (Chaudhry et al., 2019, "Efficient Lifelong Learning with A-GEM"): after backward,
    the gradient g is compared with the gradient g_ref of a batch drawn from the episodic memory of all
    past tasks; if g . g_ref < 0 it is projected to g - (g . g_ref / g_ref . g_ref) g_ref, so the update
    never increases the memory loss to first order. Every parameter's gradient is one flat vector.
    The memory is GEM's (a share per task, filled at its end; Mammoth's) or, with ``policy: per_class``,
    ``memory_per_class`` random samples of each class of each task (van de Ven et al., 2022, whose A-GEM
    draws its reference batch from such a memory); only the step differs."""

    name = "agem"
    title = "A-GEM"
    description = "Projects each update so that it does not increase the loss on a batch from memory."
    paper = "Chaudhry et al., 2019. Efficient Lifelong Learning with A-GEM"
    hparams = {
        "buffer_size": HParam(int, 200, "memory in all; each task keeps buffer_size / tasks samples, filled at "
                              "its end (Mammoth's convention)", low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 256, "memory samples for the reference gradient (256: the paper's)",
                                    low=1, high=4096),
        "policy": HParam(str, "per_task", "per_task: buffer_size / tasks samples of each task (Mammoth's; the "
                         "default); per_class: memory_per_class samples of each class of each task, the total growing "
                         "with the classes (van de Ven et al., 2022)", choices=("per_task", "per_class")),
        "memory_per_class": MEMORY_PER_CLASS,
    }

    def setup(self, module, scenario):
        if self.policy == "per_class":
            self.memory = BalancedBuffer(0, "task_class", self.generator, per_group=self.memory_per_class)
        else:
            super().setup(module, scenario)

    def after_backward(self, module, batch):
        if not len(self.memory):
            return
        params = trainable(module)
        g = current_gradient(params)
        ref = loss_gradient(module.loss(*self.memory.sample(self.replay_batch_size)), params)
        # project only when the dot product is negative; a clamp, not an if, so no device sync
        g = g - (g @ ref).clamp(max=0) / (ref @ ref).clamp(min=1e-12) * ref
        set_gradient(params, g)
