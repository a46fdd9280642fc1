"""What a user of the host runtime can cause, each with a message that says what to do.

``HostError`` derives from ``ValueError`` so the toolkit's shared CLI wrapper
(:func:`m3vit.cli.common.run_cli`) reports it as one line with exit code 2.
"""

from __future__ import annotations


class HostError(ValueError):
    """Bad input or an unusable environment: an image, a pack, a backend, an output folder."""


class BackendUnavailable(HostError):
    """A backend's library, bitstream or Python package is missing on this machine."""


class RegisterMapError(HostError):
    """The bitstream's AXI-Lite register map does not match this toolkit's accelerator interface."""


class DeviceTimeout(HostError):
    """The accelerator did not raise ap_done within the timeout."""


class DeviceBusy(HostError):
    """The accelerator was not idle when asked to start (a previous run never finished)."""
