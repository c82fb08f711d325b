"""trnsim.torch: PyTorch on simulated NeuronCores (needs the `torch` extra).

- `nki_op`, `wrap_nki`, `on_chip` (custom_op.py): NKI kernels as PyTorch custom
  operators, torch-neuronx's API, run on the simulator;
- `device` (device.py): a whole model's aten operations charged to a NeuronCore.
"""
try:
    import torch  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError("trnsim.torch needs PyTorch: install trnsim's `torch` extra "
                      "(pip install 'trnsim[torch]')") from e

from .custom_op import nki_op, on_chip, wrap_nki  # noqa: E402
from .device import device  # noqa: E402

__all__ = ["nki_op", "wrap_nki", "on_chip", "device"]
