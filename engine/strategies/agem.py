from engine.strategies.base import HParam
from engine.strategies.gem import GEM, current_gradient, loss_gradient, set_gradient, trainable


class AGEM(GEM):
    """Averaged GEM (Chaudhry et al., 2019, "Efficient Lifelong Learning with A-GEM"): after backward,
    the gradient g is compared with the gradient g_ref of a batch drawn from the episodic memory of all
    past tasks; if g . g_ref < 0 it is projected to g - (g . g_ref / g_ref . g_ref) g_ref, so the update
    never increases the memory loss to first order. Every parameter's gradient is one flat vector.
    The memory is GEM's (a share per task, filled at its end); only the step differs."""

    name = "agem"
    title = "A-GEM"
    description = "Projects each update so that it does not increase the loss on a batch from memory."
    paper = "Chaudhry et al., 2019. Efficient Lifelong Learning with A-GEM"
    hparams = {
        "buffer_size": HParam(int, 200, "memory in all; each task keeps buffer_size / tasks samples, filled at "
                              "its end (Mammoth's convention)", low=1, high=100_000, log=True),
        "replay_batch_size": HParam(int, 256, "memory samples for the reference gradient (256: the paper's)",
                                    low=1, high=4096),
    }

    def after_backward(self, module, batch):
        if not len(self.memory):
            return
        params = trainable(module)
        g = current_gradient(params)
        ref = loss_gradient(module.loss(*self.memory.sample(self.replay_batch_size)), params)
        # project only when the dot product is negative; a clamp, not an if, so no device sync
        g = g - (g @ ref).clamp(max=0) / (ref @ ref).clamp(min=1e-12) * ref
        set_gradient(params, g)
