"""How the networks run on their device: the CUDA knobs of both families' ``train`` sections
(precision, memory format, torch.compile, the modulated-conv form) resolved once per run,
and the transfers of host batches.

Every knob has an effect on CUDA only: on CPU autocast stays off, tensors stay contiguous,
nothing is compiled, and ``auto`` picks what was measured fastest there (benchmarks/RESULTS.md,
#18). ``resolve(train, device)`` is the one place the knobs meet the device; a method holds
the ``Accel`` it returns and asks it, so the CUDA branches are chosen by the device argument.
"""
from __future__ import annotations

import contextlib
import itertools
import typing
from dataclasses import dataclass

import torch

from raygan.config import knob

# The modulated conv's two forms (models/stylegan2.py ModulatedConv2d): "fused" folds the batch
# into conv groups with per-sample weights, "unfused" scales activations around one shared weight.
# CUDA: unfused, StyleGAN2-ADA's training choice (grouped convs with per-sample weight gradients
# are slow in cuDNN); benchmarks/gpu_check.py measures both. CPU: fused, the form every CPU result
# so far was computed with, although unfused measured 15 % faster on the embedded model at one
# thread (benchmarks/RESULTS.md, #18): switching changes every seeded CPU run's numbers, so it waits
# until the seeded results and calibrated tests are re-checked with it.
MODCONV_AUTO = {"cpu": "fused", "cuda": "unfused"}


@dataclass
class DeviceKnobs:
    """The CUDA knobs both families' ``train`` sections share (each TrainConfig subclasses this)."""
    precision: str = knob("auto", choices=["auto", "fp32", "bf16"],
                          help="CUDA: bf16 autocast with R1, path length and demodulation in fp32 (auto: bf16); "
                               "CPU: always fp32")
    channels_last: typing.Union[bool, str] = knob("auto", choices=[False, True, "auto"],
                                                  help="CUDA: networks and image batches in channels_last "
                                                       "(auto: on); CPU: off")
    compile: bool = knob(False, help="CUDA: torch.compile the adversarial passes of G and D (regularisers "
                                     "need double backward and stay eager); CPU: off")


@dataclass(frozen=True)
class Accel:
    """What the knobs resolved to on one device."""
    device_type: str = "cpu"
    bf16: bool = False
    channels_last: bool = False
    compile: bool = False
    fused_modconv: bool = True

    def autocast(self):
        """The region a training pass runs in: bf16 autocast, or nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)

    def net(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` in its memory format (in place, before its optimiser exists): the 4-D
        parameters and buffers. Not ``Module.to(memory_format=)``: it refuses the 5-D weights
        of StyleGAN2's modulated convs."""
        if self.channels_last:
            for t in itertools.chain(module.parameters(), module.buffers()):
                if t.ndim == 4:
                    t.data = t.data.contiguous(memory_format=torch.channels_last)
        return module

    def fast(self, module: torch.nn.Module):
        """What the adversarial passes call: ``torch.compile(module)`` (sharing its parameters and
        state_dict keys) or ``module`` itself."""
        return torch.compile(module) if self.compile else module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x


def resolve(train, device, modconv: str = "auto") -> Accel:
    """The ``Accel`` of a family's ``train`` section (a DeviceKnobs) on ``device``."""
    kind = torch.device(device).type
    cuda = kind == "cuda"
    mod = MODCONV_AUTO.get(kind, "fused") if modconv == "auto" else modconv
    return Accel(device_type=kind,
                 bf16=cuda and train.precision in ("auto", "bf16"),
                 channels_last=cuda and train.channels_last in ("auto", True),
                 compile=cuda and train.compile,
                 fused_modconv=mod == "fused")


def full_precision(device_type: str):
    """A region that autocast leaves in fp32 (regularisers whose precision matters); cast the
    tensors that enter it with ``.float()``."""
    return torch.autocast(device_type, enabled=False)


def to_device(x: torch.Tensor, device) -> torch.Tensor:
    """A host batch on ``device``: to CUDA through pinned memory without blocking the host
    (the copy is ordered on the stream before the kernels that read it); elsewhere as is."""
    device = torch.device(device)
    if device.type == "cuda" and x.device.type == "cpu":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)
