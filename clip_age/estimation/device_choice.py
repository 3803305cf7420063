"""Where CLIP runs and in which number format: CLIP_DEVICE and CLIP_CPU_PRECISION, resolved
against what this machine has."""

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)

# PyTorch's CUDA 13.0 wheels, which requirements.txt pins, need this NVIDIA driver or newer.
DRIVER_NEEDED = "an NVIDIA driver 580 or newer"


class DeviceError(RuntimeError):
    """CLIP_DEVICE asks for a device this machine cannot use; the message says what to do."""


@dataclass(frozen=True)
class Precision:
    name: str  # "fp32", "bf16" or "int8" on a CPU; "fp16" on a GPU
    reason: str


def resolve_device(setting: str) -> torch.device:
    """CLIP_DEVICE: "cpu", "cuda" (fail unless a GPU works) or "auto" (a GPU if one works)."""
    if setting == "cpu":
        return torch.device("cpu")
    problem = cuda_problem()
    if problem is None:
        return torch.device("cuda")
    if setting == "cuda":
        raise DeviceError(
            f"CLIP_DEVICE=cuda, but no GPU can be used: {problem}. This build of PyTorch needs "
            f"{DRIVER_NEEDED} (nvidia-smi shows the version) and a container started with GPU "
            "access (docker run --gpus all). To serve on the CPU instead, much slower, set "
            "CLIP_DEVICE=cpu (in cog.yaml's environment, or build with gpu: false)."
        )
    log.warning(
        "No usable GPU (%s), so CLIP runs on the CPU, which is slower. To choose the CPU and not see "
        "this notice, set CLIP_DEVICE=cpu (or pass --device cpu to clip-age).",
        problem,
    )
    return torch.device("cpu")


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here, or None when a tensor op on the GPU works."""
    if torch.version.cuda is None:
        return "this PyTorch is a CPU-only build"
    if not torch.cuda.is_available():
        return "PyTorch sees no NVIDIA GPU (none is attached, or its driver is too old)"
    try:
        (torch.ones(1, device="cuda") + 1).item()
    except RuntimeError as error:
        return f"the GPU failed a first operation ({str(error).splitlines()[0]})"
    return None


def native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX) and torch's oneDNN
    supports bf16, as torch reports them. Elsewhere bf16 is emulated: measured at half the
    speed of fp32."""
    hardware = any(
        getattr(torch.cpu, check, lambda: False)()
        for check in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    )
    return hardware and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def cpu_precision(setting: str) -> Precision:
    """CLIP_CPU_PRECISION: "bf16", "int8", "fp32", or "auto": bf16 where the CPU has it natively,
    else int8 (dynamic quantisation of the Linear layers), which measured faster than fp32."""
    if setting != "auto":
        return Precision(setting, "set by CLIP_CPU_PRECISION")
    if native_bf16():
        return Precision("bf16", "this CPU has native bf16 (AVX512-BF16 or AMX)")
    return Precision("int8", "this CPU has no native bf16; int8 Linear layers are faster than fp32")
