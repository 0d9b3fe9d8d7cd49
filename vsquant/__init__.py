"""vsquant: the NumPy reference of VS-Quant's numerics (Dai et al., MLSys 2021).

The golden model the transaction-level simulator is checked against, bit for bit:
the ``W/A/ws/as`` config (:mod:`.config`), calibration of Eq. 1's alpha (:mod:`.calibration`),
the quantizers of Eq. 1-3 and Eq. 7a-7j (:mod:`.quantize`), the block-scaled formats that descend from them
(OCP MX, NVFP4: :mod:`.formats`), the integer vector MAC of Eq. 4-5
and Sec. 5 (:mod:`.vector_mac`) and its bit-serial form over two's-complement weight bit planes (:mod:`.bitserial`,
PrecisionBatching), the PPU (:mod:`.ppu`) and reference layers (:mod:`.layers`), and their
batched PyTorch twin (:mod:`.fakequant`, imported on demand: ``import vsquant`` does not import torch).
Imports nothing of the rest of the project.
"""
from .calibration import CALIBRATION_METHODS, calibrate_amax, octav_clip
from .config import BASELINE, COARSE, QuantConfig, ScaleFormat, parse_config
from .formats import BLOCK_FORMATS, ELEMENT_FORMATS, BlockQuantized, ElementFormat, NumberFormat, quantize_block
from .layers import GemmOperands, LayerResult, conv2d, linear, matmul, quantize_conv_weight, unsigned_policy
from .ppu import ACTIVATIONS, apply_activation, post_process, quantize_activation, quantize_weight
from .quantize import (
    QuantizedTensor,
    qmax,
    quantize_per_channel,
    quantize_per_tensor,
    quantize_per_vector,
    quantize_two_level,
    quantize_with_scale,
    sqnr_db,
)
from .vector_mac import AccumulatorOverflow, MacResult, gated_count, round_scale_product, vector_mac

__all__ = [
    "BLOCK_FORMATS", "ELEMENT_FORMATS", "BlockQuantized", "ElementFormat", "NumberFormat", "quantize_block",
    "BASELINE", "CALIBRATION_METHODS", "calibrate_amax", "octav_clip", "COARSE", "QuantConfig", "ScaleFormat",
    "parse_config",
    "GemmOperands", "LayerResult", "conv2d", "linear", "matmul", "quantize_conv_weight", "unsigned_policy",
    "ACTIVATIONS",
    "apply_activation",
    "post_process", "quantize_activation", "quantize_weight", "QuantizedTensor", "qmax",
    "quantize_per_channel", "quantize_per_tensor", "quantize_per_vector", "quantize_two_level",
    "quantize_with_scale", "sqnr_db", "AccumulatorOverflow", "MacResult", "gated_count",
    "round_scale_product", "vector_mac",
]
