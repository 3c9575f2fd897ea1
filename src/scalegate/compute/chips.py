"""Accelerators and their dense peak throughput per number format, with the datasheet each
value comes from.

Vendors print tensor-core peaks *with 2:4 structured sparsity* in their headline tables and
mark them with a footnote; training does not use that sparsity, so every value here is the
**dense** figure (the sparse figure halved where the sheet gives only the sparse one). The
hardware method of the EU guidelines (C = chips × time × peak × utilisation) expects exactly
this dense peak for the format the run trained in.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydantic import BaseModel, ConfigDict

from scalegate.errors import ComputeError

DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")

_A100 = (
    "NVIDIA A100 Tensor Core GPU datasheet (nvidia-a100-datasheet-us-nvidia-1758950-r4-web.pdf), "
    "spec table"
)
_H100 = (
    "NVIDIA H100 Tensor Core GPU datasheet (h100-datasheet-2430615), spec table; "
    "tensor-core rows are quoted with sparsity, dense = half"
)
_H200 = (
    "NVIDIA H200 Tensor Core GPU datasheet (h200-datasheet-3002446), H200 SXM column; "
    "tensor-core rows are quoted with sparsity, dense = half"
)
_B200 = (
    "NVIDIA HGX B200 platform specifications (nvidia.com/en-us/data-center/hgx), 8-GPU "
    "figures quoted with sparsity; per GPU = /8, dense = half"
)
_MI300X = (
    "AMD Instinct MI300X accelerator data sheet (amd-instinct-mi300x-data-sheet.pdf), "
    "peak theoretical performance without structured sparsity"
)
_TPU_V4 = "Google Cloud TPU v4 documentation (cloud.google.com/tpu/docs/v4), key specifications"
_TPU_V5E = "Google Cloud TPU v5e documentation (cloud.google.com/tpu/docs/v5e), key specifications"
_TPU_V5P = "Google Cloud TPU v5p documentation (cloud.google.com/tpu/docs/v5p), key specifications"
_TPU_V5P_INT8 = (
    "Google Cloud blog 'Introducing Cloud TPU v5p and AI Hypercomputer' (2023-12-06): "
    "459 teraFLOPS bf16, 918 teraOPS int8 per chip"
)


class Chip(BaseModel):
    """One accelerator: dense peak operations per second per format, each with its source."""

    model_config = ConfigDict(frozen=True)

    name: str
    vendor: str
    peak: dict[str, float]
    sources: dict[str, str]
    note: str = ""

    def peak_flops(self, dtype: str = "bf16") -> float:
        """Dense peak FLOP/s (or OP/s for int8) of this chip in ``dtype``."""
        key = dtype.lower()
        if key not in self.peak:
            known = ", ".join(self.peak)
            raise ComputeError(
                f"chip {self.name} has no published dense peak for {dtype!r}.",
                hint=f"Use one of: {known}.",
            )
        return self.peak[key]

    def source(self, dtype: str = "bf16") -> str:
        """The datasheet a value comes from."""
        self.peak_flops(dtype)
        return self.sources[dtype.lower()]


def _chip(name: str, vendor: str, rows: dict[str, tuple[float, str]], note: str = "") -> Chip:
    return Chip(
        name=name,
        vendor=vendor,
        peak={k: v for k, (v, _) in rows.items()},
        sources={k: s for k, (_, s) in rows.items()},
        note=note,
    )


_T = 1e12
_TABLE: tuple[Chip, ...] = (
    _chip(
        "A100-SXM",
        "NVIDIA",
        {
            "fp64": (19.5 * _T, _A100 + ": FP64 Tensor Core 19.5 TFLOPS"),
            "fp32": (19.5 * _T, _A100 + ": FP32 19.5 TFLOPS"),
            "tf32": (156 * _T, _A100 + ": TF32 Tensor Core 156 TFLOPS (312 with sparsity)"),
            "bf16": (312 * _T, _A100 + ": BFLOAT16 Tensor Core 312 TFLOPS (624 with sparsity)"),
            "fp16": (312 * _T, _A100 + ": FP16 Tensor Core 312 TFLOPS (624 with sparsity)"),
            "int8": (624 * _T, _A100 + ": INT8 Tensor Core 624 TOPS (1248 with sparsity)"),
        },
        note="80GB and 40GB SXM parts have the same peaks",
    ),
    _chip(
        "A100-PCIe",
        "NVIDIA",
        {
            "fp64": (19.5 * _T, _A100 + ": FP64 Tensor Core 19.5 TFLOPS (PCIe column)"),
            "fp32": (19.5 * _T, _A100 + ": FP32 19.5 TFLOPS (PCIe column)"),
            "tf32": (156 * _T, _A100 + ": TF32 Tensor Core 156 TFLOPS (PCIe column)"),
            "bf16": (312 * _T, _A100 + ": BFLOAT16 Tensor Core 312 TFLOPS (PCIe column)"),
            "fp16": (312 * _T, _A100 + ": FP16 Tensor Core 312 TFLOPS (PCIe column)"),
            "int8": (624 * _T, _A100 + ": INT8 Tensor Core 624 TOPS (PCIe column)"),
        },
        note="same peaks as SXM; lower sustained clocks at 300 W",
    ),
    _chip(
        "H100-SXM",
        "NVIDIA",
        {
            "fp64": (67 * _T, _H100 + ": FP64 Tensor Core 67 TFLOPS (SXM)"),
            "fp32": (67 * _T, _H100 + ": FP32 67 TFLOPS (SXM)"),
            "tf32": (494.5 * _T, _H100 + ": TF32 Tensor Core 989 TFLOPS* (SXM)"),
            "bf16": (989 * _T, _H100 + ": BFLOAT16 Tensor Core 1,979 TFLOPS* (SXM)"),
            "fp16": (989 * _T, _H100 + ": FP16 Tensor Core 1,979 TFLOPS* (SXM)"),
            "fp8": (1979 * _T, _H100 + ": FP8 Tensor Core 3,958 TFLOPS* (SXM)"),
            "int8": (1979 * _T, _H100 + ": INT8 Tensor Core 3,958 TOPS* (SXM)"),
        },
        note="989 TFLOP/s bf16 is the figure the EU guidelines' worked example uses",
    ),
    _chip(
        "H100-PCIe",
        "NVIDIA",
        {
            "fp64": (51 * _T, _H100 + ": FP64 Tensor Core 51 TFLOPS (PCIe)"),
            "fp32": (51 * _T, _H100 + ": FP32 51 TFLOPS (PCIe)"),
            "tf32": (378 * _T, _H100 + ": TF32 Tensor Core 756 TFLOPS* (PCIe)"),
            "bf16": (756.5 * _T, _H100 + ": BFLOAT16 Tensor Core 1,513 TFLOPS* (PCIe)"),
            "fp16": (756.5 * _T, _H100 + ": FP16 Tensor Core 1,513 TFLOPS* (PCIe)"),
            "fp8": (1513 * _T, _H100 + ": FP8 Tensor Core 3,026 TFLOPS* (PCIe)"),
            "int8": (1513 * _T, _H100 + ": INT8 Tensor Core 3,026 TOPS* (PCIe)"),
        },
    ),
    _chip(
        "H200",
        "NVIDIA",
        {
            "fp64": (67 * _T, _H200 + ": FP64 Tensor Core 67 TFLOPS"),
            "fp32": (67 * _T, _H200 + ": FP32 67 TFLOPS"),
            "tf32": (494.5 * _T, _H200 + ": TF32 Tensor Core 989 TFLOPS*"),
            "bf16": (989 * _T, _H200 + ": BFLOAT16 Tensor Core 1,979 TFLOPS*"),
            "fp16": (989 * _T, _H200 + ": FP16 Tensor Core 1,979 TFLOPS*"),
            "fp8": (1979 * _T, _H200 + ": FP8 Tensor Core 3,958 TFLOPS*"),
            "int8": (1979 * _T, _H200 + ": INT8 Tensor Core 3,958 TOPS*"),
        },
        note="same GH100 compute as H100 SXM, more and faster memory",
    ),
    _chip(
        "B200",
        "NVIDIA",
        {
            "fp64": (37 * _T, _B200 + ": FP64/FP64 Tensor Core 296 TFLOPS per 8 GPUs"),
            "fp32": (75 * _T, _B200 + ": FP32 600 TFLOPS per 8 GPUs"),
            "tf32": (1125 * _T, _B200 + ": TF32 Tensor Core 18 PFLOPS* per 8 GPUs"),
            "bf16": (2250 * _T, _B200 + ": FP16/BF16 Tensor Core 36 PFLOPS* per 8 GPUs"),
            "fp16": (2250 * _T, _B200 + ": FP16/BF16 Tensor Core 36 PFLOPS* per 8 GPUs"),
            "fp8": (4500 * _T, _B200 + ": FP8/FP6 Tensor Core 72 PFLOPS* per 8 GPUs"),
            "int8": (4500 * _T, _B200 + ": INT8 Tensor Core 72 POPS* per 8 GPUs"),
        },
        note="HGX (1,000 W) configuration; GB200 parts run at higher power and peaks",
    ),
    _chip(
        "MI300X",
        "AMD",
        {
            "fp64": (163.4 * _T, _MI300X + ": peak FP64 matrix 163.4 TFLOPs"),
            "fp32": (163.4 * _T, _MI300X + ": peak FP32 matrix 163.4 TFLOPs"),
            "tf32": (653.7 * _T, _MI300X + ": peak TF32 653.7 TFLOPs"),
            "bf16": (1307.4 * _T, _MI300X + ": peak BF16 1,307.4 TFLOPs"),
            "fp16": (1307.4 * _T, _MI300X + ": peak FP16 1,307.4 TFLOPs"),
            "fp8": (2614.9 * _T, _MI300X + ": peak FP8 2,614.9 TFLOPs"),
            "int8": (2614.9 * _T, _MI300X + ": peak INT8 2,614.9 TOPs"),
        },
    ),
    _chip(
        "TPU-v4",
        "Google",
        {
            "bf16": (275 * _T, _TPU_V4 + ": peak compute per chip 275 teraflops (bf16 or int8)"),
            "int8": (275 * _T, _TPU_V4 + ": peak compute per chip 275 teraflops (bf16 or int8)"),
        },
    ),
    _chip(
        "TPU-v5e",
        "Google",
        {
            "bf16": (197 * _T, _TPU_V5E + ": peak compute per chip (bf16) 197 TFLOPs"),
            "int8": (393 * _T, _TPU_V5E + ": peak compute per chip (Int8) 393 TOPs"),
        },
    ),
    _chip(
        "TPU-v5p",
        "Google",
        {
            "bf16": (459 * _T, _TPU_V5P + ": peak compute per chip (bf16) 459 TFLOPs"),
            "int8": (918 * _T, _TPU_V5P_INT8),
        },
    ),
)

CHIPS: Mapping[str, Chip] = MappingProxyType({c.name: c for c in _TABLE})

# Spellings people use for the same part. Deliberately no bare "H100": SXM and PCIe
# differ by 30 %, which is the whole EU error margin.
_ALIASES = {
    "A100": "A100-SXM",
    "A100-80GB": "A100-SXM",
    "H100-SXM5": "H100-SXM",
    "H200-SXM": "H200",
    "MI300": "MI300X",
    "V4": "TPU-v4",
    "V5E": "TPU-v5e",
    "V5P": "TPU-v5p",
    "TPUV4": "TPU-v4",
    "TPUV5E": "TPU-v5e",
    "TPUV5P": "TPU-v5p",
}


def _key(name: str) -> str:
    return name.strip().upper().replace("_", "-").replace(" ", "-")


_INDEX = {
    spelling: target
    for name, target in [(n, n) for n in CHIPS] + list(_ALIASES.items())
    for spelling in (_key(name), _key(name).replace("-", ""))
}


def get_chip(name: str) -> Chip:
    """The chip called ``name`` (case-insensitive; ``A100`` means the SXM part).

    Raises ``ComputeError`` listing every known chip when the name is unknown.
    """
    target = _INDEX.get(_key(name).replace("-", ""))
    if target is None:
        known = ", ".join(CHIPS)
        hint = "Say which form factor: H100-SXM or H100-PCIe." if "H100" in _key(name) else ""
        raise ComputeError(
            f"unknown chip {name!r}; known chips: {known}.",
            hint=hint or "Or give the chip's dense peak FLOP/s yourself (--peak-flops).",
        )
    return CHIPS[target]


def known_chips() -> list[str]:
    """Names of every chip in the table."""
    return list(CHIPS)


__all__ = ["CHIPS", "DTYPES", "Chip", "get_chip", "known_chips"]
