"""Accelerators and their dense peak throughput per number format, with the datasheet each
value comes from.

The table itself is data, ``chips.yaml`` beside this module. Vendors print tensor-core
peaks *with 2:4 structured sparsity* in their headline tables and mark them with a
footnote; training does not use that sparsity, so every value here is the **dense**
figure (the sparse figure halved where the sheet gives only the sparse one). The hardware
method of the EU guidelines (C = chips × time × peak × utilisation) expects exactly this
dense peak for the format the run trained in.
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from types import MappingProxyType

import yaml
from pydantic import BaseModel, ConfigDict

from scalegate.errors import ComputeError

DTYPES: tuple[str, ...] = ("fp64", "fp32", "tf32", "bf16", "fp16", "fp8", "int8")


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


def _load() -> tuple[dict[str, Chip], dict[str, str]]:
    """The table in ``chips.yaml`` (bundled, so read plainly): chips by name, and aliases."""
    data = yaml.safe_load(files("scalegate.compute").joinpath("chips.yaml").read_text("utf-8"))
    sheets: dict[str, str] = data["datasheets"]
    table = {}
    for c in data["chips"]:
        rows = c["peak"]
        table[c["name"]] = Chip(
            name=c["name"], vendor=c["vendor"], note=c.get("note", ""),
            peak={k: float(r["tera"]) * 1e12 for k, r in rows.items()},
            sources={k: sheets[r["sheet"]] + (f": {r['line']}" if r.get("line") else "")
                     for k, r in rows.items()})
    return table, dict(data["aliases"])


_TABLE, _ALIASES = _load()
CHIPS: Mapping[str, Chip] = MappingProxyType(_TABLE)


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
