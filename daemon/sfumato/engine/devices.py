"""Pick the compute device, thread count and mixed precision once per process."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import sys

import torch

from sfumato.errors import UsageError


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` prefers CUDA, then Apple MPS, then the CPU."""
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda was asked for, but no CUDA GPU is available: use --device auto")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise UsageError("device mps was asked for, but Apple MPS is not available: use --device auto")
    if name not in ("cpu", "cuda", "mps"):
        raise UsageError(f"unknown device {name!r}: use auto, cpu, cuda or mps")
    return torch.device(name)


def set_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(int(threads))


def autocast(device: torch.device):
    """bfloat16 autocast on CUDA (halves memory, doubles speed); exact float32 elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def cpu_bfloat16(device: torch.device):
    """bfloat16 autocast on a CPU that computes it natively; float32 elsewhere.

    For models of large matrix products (transformers): on such a CPU they run a third faster in
    bfloat16 with the same input gradient (cosine 0.9999 on ViT-B-32 with random weights, the
    only ones this project's machines can load). Convolutional networks gain nothing there and
    lose gradient precision (cosine 0.92 on EfficientNet-Lite), and without native support
    PyTorch emulates bfloat16, slower than float32.
    """
    if device.type == "cpu" and native_cpu_bfloat16():
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@functools.cache
def native_cpu_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (Intel AMX or AVX-512 BF16). PyTorch asks
    the CPU only through private functions, so a PyTorch without them counts as no."""
    cpu = getattr(torch, "cpu", None)
    checks = [getattr(cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    try:
        return any(check() for check in checks if check is not None)
    except RuntimeError:
        return False


def release_freed_memory() -> None:
    """Hand the heap memory a finished search has freed back to the system (Linux glibc).

    The search allocates and frees thousands of mid-sized tensors; glibc keeps the freed pages
    (0.17 GB after ``slow``'s 160 steps, measured), and the full-resolution stage that follows
    maps its 24-megapixel buffers on top of them. Elsewhere this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once; None off Linux or without glibc (musl has none)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None
