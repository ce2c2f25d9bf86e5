"""Resume a run from its last completed task.

At the end of each task but the last, the run saves ``resume.pt`` in its artifacts directory
(``engine/runs/artifacts.py`` names it; this module is given its path), atomically (a temp file, then ``os.replace``). It holds what the
rest of the run depends on:

- the network's weights;
- the strategy's state (``Strategy.state_dict``: by default every attribute, such as a replay buffer,
  EWC's Fisher and optimal weights, LwF's teacher network, and its random generators). It is pickled
  as one graph, so objects shared between attributes stay shared (Replay's generator and its buffer's),
  and references to what the resumed run rebuilds itself (its module, network, parameters, the
  scenario's data) are saved as references and point at the resumed ones. An attribute that cannot be pickled (a lambda, a lock, an open file) is
  named in the checkpoint, and resuming refuses with that list: never a silent wrong resume;
- every random state: the training batches' generator, torch's global generator (CUDA's too where
  used), NumPy's and Python's global ones;
- where continual evaluation stands (the global step and task), and how many experiences are done.

The optimizer is not saved: every task starts a fresh one (engine/training/train.py), so at a task's end it
holds nothing the next task uses. The file is a pickle: a small header (plain values, readable
without torch) then the body; it is the lab's own file, written beside its database. It is deleted
when the run finishes. The weights kept after each task (``after-task-k.pt``) are a separate matter.
"""

from __future__ import annotations

import io
import os
import pickle
import random
from pathlib import Path
from typing import Any

FORMAT = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message is one line for the user."""


def read_header(path: str | os.PathLike) -> dict:
    """The checkpoint's header (task, step, experiences done, config, what it could not save)."""
    try:
        with open(path, "rb") as f:
            header = pickle.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"there is no checkpoint at {path}") from None
    except Exception as err:
        raise CheckpointError(f"the checkpoint {path} cannot be read: {err}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CheckpointError(f"the checkpoint {path} is not one this CL Lab wrote (format {FORMAT})")
    return header


# ---- the strategy's state: one pickled graph, with references to the live run kept as references ----
def live_objects(module, scenario=None, experiences=None) -> dict[str, Any]:
    """What a resumed run rebuilds itself, by name: the module, its network, parameters and buffers,
    and the data (the scenario, its tasks, the experiences and their tensors). A strategy's reference
    to one of them is saved as a reference, not a copy (a copy of the network would be a wrong
    resume; a copy of the data, a large file)."""
    live = {"module": module, "net": module.net}
    live.update({"param:" + n: p for n, p in module.named_parameters()})
    live.update({"buffer:" + n: b for n, b in module.named_buffers()})
    _name("scenario", scenario, live)
    _name("experiences", experiences, live)
    return live


def _name(prefix: str, obj: Any, into: dict[str, Any], depth: int = 5) -> None:
    """``obj`` and the lists, objects and tensors under it (a few levels: down to the tasks' samples and
    the pool of data they index), under dotted names."""
    import torch

    if obj is None or isinstance(obj, torch.nn.Module):
        return
    into[prefix] = obj
    if depth and isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _name(f"{prefix}[{i}]", value, into, depth - 1)
    elif depth and hasattr(obj, "__dict__"):
        for key, value in vars(obj).items():
            if isinstance(value, (torch.Tensor, list, tuple)) or hasattr(value, "__dict__"):
                _name(f"{prefix}.{key}", value, into, depth - 1)


class _Pickler(pickle.Pickler):
    def __init__(self, file, live: dict[str, Any]):
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.ids = {id(obj): name for name, obj in live.items()}  # all alive while pickling: an id is theirs

    def persistent_id(self, obj):
        return self.ids.get(id(obj))


class _Unpickler(pickle.Unpickler):
    def __init__(self, file, live: dict[str, Any]):
        super().__init__(file)
        self.live = live

    def persistent_load(self, pid):
        if pid not in self.live:
            raise CheckpointError(f"the checkpoint refers to {pid!r}, which the resumed run does not have")
        return self.live[pid]


def _dumps(value: Any, live: dict[int, str]) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, live).dump(value)
    return buf.getvalue()


def strategy_blob(strategy, live: dict[str, Any]) -> tuple[bytes, list[str]]:
    """The strategy's state pickled, and one line for each attribute that could not be."""
    state = strategy.state_dict()
    try:
        return _dumps(state, live), []
    except Exception:
        kept, missing = {}, []
        for key, value in state.items():
            try:
                _dumps(value, live)
                kept[key] = value
            except Exception as err:
                missing.append(f"{type(strategy).__name__}.{key} ({type(value).__name__}): {err}")
        return _dumps(kept, live), missing


def strategy_state(blob: bytes, live: dict[str, Any]) -> dict[str, Any]:
    """The state ``strategy_blob`` pickled, its references resolved to the ``live`` objects."""
    return _Unpickler(io.BytesIO(blob), live).load()


# ---- save and restore ------------------------------------------------------------------------------
def save(path: str | os.PathLike, config, module, strategy, batches, evaluation, experiences_done: int,
         data: dict[str, Any] | None = None) -> None:
    """Save what resuming after ``experiences_done`` experiences needs (call after ``after_task``).
    ``data``: ``scenario`` and ``experiences``, for ``live_objects``."""
    import numpy as np
    import torch

    path = Path(path)
    blob, missing = strategy_blob(strategy, live_objects(module, **(data or {})))
    header = {"format": FORMAT, "config": config.model_dump(mode="json"), "task": evaluation.task,
              "step": evaluation.step, "experiences_done": experiences_done, "unsupported": missing,
              "torch_version": torch.__version__}
    body = {
        "net": module.net.state_dict(),
        "optimizer_carry": module.optimizer_carry,  # train.optimizer_state keep
        "strategy": blob,
        "batches": batches.get_state(),
        "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            pickle.dump(header, f, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.dump(body, f, protocol=pickle.HIGHEST_PROTOCOL)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk: no half file left taking space
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def check(header: dict, config: dict) -> None:
    """Refuse, with the reason, a checkpoint that cannot continue ``config`` (as JSON)."""
    if header["config"] != config:
        raise CheckpointError("the checkpoint was saved by a run with another config: it cannot continue this one")
    if header["unsupported"]:
        raise CheckpointError("the checkpoint could not save this strategy's state, so resuming would not "
                              "continue the same run: " + "; ".join(header["unsupported"]))


def restore(path: str | os.PathLike, config, module, strategy, batches, evaluation,
            data: dict[str, Any] | None = None) -> int:
    """Load the checkpoint into a freshly built run (after ``strategy.setup``); returns how many
    experiences are done (train from the next)."""
    import numpy as np
    import torch

    header = read_header(path)
    check(header, config.model_dump(mode="json"))
    with open(path, "rb") as f:
        pickle.load(f)  # the header
        body = pickle.load(f)  # the lab's own file, written beside its database
    module.net.load_state_dict(body["net"])
    module.optimizer_carry = body.get("optimizer_carry")
    strategy.load_state_dict(strategy_state(body["strategy"], live_objects(module, **(data or {}))))
    batches.set_state(body["batches"])
    rng = body["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(rng["numpy"])
    random.setstate(rng["python"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    evaluation.resume_at(header["step"], header["task"])
    return header["experiences_done"]
