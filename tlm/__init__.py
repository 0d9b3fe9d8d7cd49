"""vsqsim's transaction-level model: a SystemC TLM-2.0-style kernel on SimPy.

Kernel (IEEE 1666-2011 TLM-2.0, the subpackage :mod:`tlm.kernel`): the generic payload (§14), sockets with
blocking transport (§11.1.1), the quantum keeper (§16.2) and a memory target.

Hardware (paper Sec. 5, Fig. 2), one component per file: vector MAC units
(``vector_mac_unit``), weight and activation buffers storing a scale beside every vector
(``buffers``), the accumulation collector, the PPU, the PE, DRAM / global buffer / NoC
(``interconnect``), the accelerator top (``accelerator``), declarative hardware presets
(``hardware``, ``presets/*.yaml``), tiles and layer tasks (``transactions``), action counts.
"""

# the kernel (tlm.kernel), then the hardware built on it
from .accelerator import BASELINE, Accelerator, LayerRun, baseline_config, datapath_config
from .actions import ActionCounts
from .hardware import DEFAULT_PRESET, HardwareSpec, PESpec, list_presets, load_hardware
from .kernel import (
    BindingError,
    Command,
    InitiatorSocket,
    Memory,
    Payload,
    QuantumKeeper,
    ResponseStatus,
    TargetSocket,
    TransportError,
    occupy,
)
from .transactions import GemmShape, GemmTile, LayerTask, Tiling

__all__ = [
    # kernel
    "Command",
    "Payload",
    "ResponseStatus",
    "TransportError",
    "BindingError",
    "InitiatorSocket",
    "TargetSocket",
    "QuantumKeeper",
    "Memory",
    "occupy",
    # hardware
    "ActionCounts",
    "DEFAULT_PRESET",
    "HardwareSpec",
    "PESpec",
    "list_presets",
    "load_hardware",
    "GemmShape",
    "GemmTile",
    "LayerTask",
    "Tiling",
    "Accelerator",
    "BASELINE",
    "baseline_config",
    "datapath_config",
    "LayerRun",
]
