"""The machine's GPUs and a run's device, without initialising CUDA in the calling process.

The lab process (the store's owner, the config check, the run manager) must not initialise CUDA: a
worker for a GPU run is started with ``CUDA_VISIBLE_DEVICES`` set to its GPU, and CUDA in the owner
would hold memory on every GPU for nothing. So GPUs are counted with ``nvidia-smi -L`` (and, where it
is missing but torch was built with CUDA, with torch's NVML-based count, which does not create a
context). ``CUDA_VISIBLE_DEVICES`` in the lab's own environment limits the GPUs it uses.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

DEVICE_PATTERN = re.compile(r"^(auto|cpu|cuda|cuda:\d{1,3})$")


@functools.lru_cache(maxsize=1)
def gpu_indices() -> tuple[int, ...]:
    """The machine's GPU indices this lab may use (``cuda:N`` in a config names index N)."""
    found = _nvidia_smi()
    if found is None:  # torch's count already applies CUDA_VISIBLE_DEVICES (and renumbers from 0)
        return tuple(range(_torch_count()))
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return tuple(range(len(found)))
    allowed = []
    for item in (v.strip() for v in visible.split(",")):
        if not item:
            continue
        if item.isdigit():
            if int(item) < len(found):
                allowed.append(int(item))
        else:  # a UUID (GPU-...) as nvidia-smi prints it
            allowed += [k for k, uuid in enumerate(found) if uuid and uuid.startswith(item)]
        if item == "-1":
            break
    return tuple(dict.fromkeys(allowed))


def _nvidia_smi() -> list[str] | None:
    """One UUID (or "") per GPU, or None if nvidia-smi is not there or fails."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line for line in out.splitlines() if line.startswith("GPU ")]
    return [(m.group(1) if (m := re.search(r"UUID: (GPU-[0-9a-fA-F-]+)", line)) else "") for line in lines]


def _torch_count() -> int:
    import torch

    if not torch.backends.cuda.is_built():
        return 0
    return torch.cuda.device_count()  # NVML-based where NVML is present: no CUDA context


def gpu_count() -> int:
    return len(gpu_indices())


def device_problem(device: str) -> str | None:
    """Why ``device`` (a config's ``train.device``) cannot run on this machine, or None."""
    if not DEVICE_PATTERN.match(device):
        return "must be auto, cpu, cuda or cuda:N (N a GPU index)"
    if device.startswith("cuda"):
        gpus = gpu_indices()
        if not gpus:
            return "this machine has no GPU (use auto or cpu)"
        if ":" in device and int(device.split(":")[1]) not in gpus:
            return f"no such GPU here (this lab may use: {', '.join(f'cuda:{g}' for g in gpus)})"
    return None


def wants_gpu(device: str) -> bool:
    """Whether a run with this ``train.device`` trains on a GPU here (auto: when there is one)."""
    return device.startswith("cuda") or (device == "auto" and gpu_count() > 0)


def fabric_device(device: str) -> tuple[str, list[int] | int]:
    """Fabric's ``accelerator`` and ``devices`` for a device seen from the training process itself
    (where ``CUDA_VISIBLE_DEVICES`` may have narrowed the GPUs to one, cuda:0). Here ``auto`` asks
    torch, since this process trains anyway."""
    import torch

    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return "cpu", 1
    return "cuda", [int(device.split(":")[1]) if ":" in device else 0]


def device_label(device: str) -> str:
    """The device a run with this ``train.device`` trains on in this process: cpu or cuda:N."""
    accelerator, devices = fabric_device(device)
    return "cpu" if accelerator == "cpu" else f"cuda:{devices[0]}"
