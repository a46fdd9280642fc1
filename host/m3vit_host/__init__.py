"""m3vit_host: the host runtime of the M³ViT accelerator (board, simulations, reference) and ``m3vit-run``."""

from .backends import BACKENDS, BackendOptions
from .errors import BackendUnavailable, DeviceBusy, DeviceTimeout, HostError, RegisterMapError
from .runtime import RunResult, Runtime, load_pack, open_runtime

__all__ = ["BACKENDS", "BackendOptions", "BackendUnavailable", "DeviceBusy", "DeviceTimeout", "HostError",
           "RegisterMapError", "RunResult", "Runtime", "load_pack", "open_runtime"]
