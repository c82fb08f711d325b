"""Chip descriptions (trn1/trn2/trn3) loaded from JSON data files.

Every leaf in a chip file is either ``{"value": ..., "source": "..."}`` or a
plain value.  The sources are kept in ``Chip.sources`` keyed by the dotted
attribute path (``"hbm_bandwidth"``, ``"core.tensor.clock_hz"``, ...).

    >>> load_chip("trn2").core.sbuf_usable_bytes_per_partition
    212984
"""

import dataclasses
import functools
import importlib.resources
import json
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Chip", "CoreSpec", "TensorEngineSpec", "EngineSpec", "DmaSpec",
           "load_chip", "available_chips"]

_ALIASES = {"trn1": "trn1", "inf2": "trn1", "gen2": "trn1",
            "trn2": "trn2", "gen3": "trn2",
            "trn3": "trn3", "gen4": "trn3"}
_BUILTIN = ("trn1", "trn2", "trn3")
_ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"
_DEFAULT = "trn2"


def _opt(default=None):
    """An optional field: may be omitted from a chip file."""
    if isinstance(default, type):
        return field(default_factory=default, hash=False)
    return field(default=default, hash=False)


@dataclass(frozen=True)
class TensorEngineSpec:
    clock_hz: float
    rows: int
    cols: int
    stationary_fmax: int
    contraction_max: int
    moving_fmax_fp32: int
    moving_fmax_16bit: int
    min_ii_cycles: int
    fp32_cost_factor: int
    fast_load_stationary_factor: int
    supports_double_row: bool
    supports_mx: bool
    supports_e4m3fn: bool
    supports_bf16_psum: bool
    tile_sizes: tuple
    peak_bf16_flops: float
    peak_fp8_flops: float
    peak_fp32_flops: float
    peak_mx_flops: float | None = None
    warmup_throttle: dict | None = _opt(None)
    extras: dict = _opt(dict)


@dataclass(frozen=True)
class EngineSpec:
    clock_hz: float
    lanes: int
    elements_per_cycle: int
    elements_per_cycle_16bit: int
    min_ii_cycles: int
    static_overhead_cycles: int
    dependent_issue_overhead_cycles: int
    extras: dict = _opt(dict)


@dataclass(frozen=True)
class DmaSpec:
    engines: int
    queues_per_engine: int
    bandwidth_per_engine: float
    aggregate_bandwidth: float
    fixed_cost_ns: float
    dge_cost_ns: float
    partitions_per_engine: int
    efficient_bytes_per_partition: int
    saturating_bytes_per_partition: int
    packet_bytes: int
    extras: dict = _opt(dict)


@dataclass(frozen=True)
class CoreSpec:
    partitions: int
    sbuf_bytes_per_partition: int
    sbuf_usable_bytes_per_partition: int
    psum_bytes_per_partition: int
    psum_banks: int
    psum_bank_bytes: int
    sbuf_align_bytes: int
    tensor: TensorEngineSpec
    vector: EngineSpec
    scalar: EngineSpec
    gpsimd: EngineSpec
    dma: DmaSpec
    extras: dict = _opt(dict)


@dataclass(frozen=True)
class Chip:
    name: str
    nc_version: str
    generation: int
    core_name: str
    cores_per_chip: int
    hbm_bytes: int
    hbm_bandwidth: float
    hbm_stacks: int
    hbm_stack_bandwidth: float
    chip_dma_bandwidth: float
    link_bandwidth: float
    link_topology: str
    cc_cores: int
    core: CoreSpec
    sources: dict = field(default_factory=dict, hash=False, compare=False, repr=False)
    path: str | None = field(default=None, compare=False)
    profiler_base_clock_hz: float | None = None
    extras: dict = _opt(dict)


def available_chips() -> list[str]:
    return list(_BUILTIN)


def load_chip(chip=None) -> Chip:
    """A Chip from a Chip, a name (trn1|inf2|gen2|trn2|gen3|trn3|gen4) or a JSON path.

    None means $NEURON_PLATFORM_TARGET_OVERRIDE if set, else trn2.
    """
    if isinstance(chip, Chip):
        return chip
    if chip is None or (isinstance(chip, str) and not chip.strip()):
        chip = os.environ.get(_ENV, "").strip() or _DEFAULT
    return load_named_or_file(chip, _ALIASES, _load_builtin, _parse, "chip")


def load_named_or_file(spec, names: dict, load_builtin, parse, what: str):
    """A data file: built in (`names`: each accepted name -> its built-in key, loaded by
    `load_builtin`) or a user's JSON file at path `spec`, read by `parse(text, where)`.
    Chips and fabric topologies are both loaded this way."""
    if not isinstance(spec, os.PathLike):
        key = str(spec).strip().lower()
        if key in names:
            return load_builtin(names[key])
        if not (key.endswith(".json") or os.sep in key or "/" in key):
            raise ValueError(f"unknown {what} {spec!r}; valid names: {', '.join(names)} "
                             f"(or a path to a {what} JSON file)")
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    return parse(path.read_text(encoding="utf-8"), str(path))


@functools.lru_cache(maxsize=None)
def _load_builtin(name: str) -> Chip:
    res = importlib.resources.files(__name__).joinpath(f"{name}.json")
    return _parse(res.read_text(encoding="utf-8"), str(res))


# ---------------------------------------------------------------- parsing

def json_object(text: str, where: str) -> dict:
    """The JSON object a data file (chip, topology) holds; errors name the file."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: invalid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{where}: top level must be a JSON object")
    return data


def _parse(text: str, where: str) -> Chip:
    data = json_object(text, where)
    sources: dict = {}
    top = {}
    for key in ("name", "nc_version", "core_name"):
        if key not in data:
            raise ValueError(f"{where}: missing required field '{key}'")
        top[key] = _value(data[key], key, sources, where)
        if not isinstance(top[key], str):
            raise ValueError(f"{where}: field '{key}' must be a string")
    m = re.fullmatch(r"gen(\d+)", top["nc_version"])
    if not m:
        raise ValueError(f"{where}: field 'nc_version' must look like 'gen3', got {top['nc_version']!r}")
    extra = set(data) - {"name", "nc_version", "core_name", "chip", "core", "description"}
    extra = {k for k in extra if not k.startswith("_")}
    if extra:
        raise ValueError(f"{where}: unknown top-level field(s) {sorted(extra)}")
    section = dict(_section(data, "chip", "", where))
    section["core"] = _section(data, "core", "", where)
    fixed = {**top, "generation": int(m.group(1))}
    return _build(Chip, section, "", sources, where, fixed=fixed, path=where)


def _section(data, key, prefix, where):
    if key not in data:
        raise ValueError(f"{where}: missing required field '{prefix}{key}'")
    sec = data[key]
    if not isinstance(sec, dict) or "value" in sec:
        raise ValueError(f"{where}: field '{prefix}{key}' must be a section (JSON object)")
    return sec


def _build(cls, section, prefix, sources, where, fixed=(), path=None):
    fixed = dict(fixed)
    kwargs = {}
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(section) - names
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(prefix + u for u in unknown)}")
    for f in dataclasses.fields(cls):
        dotted = prefix + f.name
        if f.name in fixed:
            kwargs[f.name] = fixed[f.name]
        elif f.name in ("sources", "path") and cls is Chip:
            continue
        elif dataclasses.is_dataclass(f.type):
            sub = _section(section, f.name, prefix, where)
            kwargs[f.name] = _build(f.type, sub, dotted + ".", sources, where)
        elif f.name in section:
            raw = _value(section[f.name], dotted, sources, where)
            kwargs[f.name] = _coerce(raw, f.type, dotted, where)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            hint = " (section 'chip')" if cls is Chip else ""
            raise ValueError(f"{where}: missing required field '{dotted}'{hint}")
    if cls is Chip:
        kwargs["sources"] = sources
        kwargs["path"] = path
    return cls(**kwargs)


def _value(node, dotted, sources, where):
    """Strip {"value", "source"} wrappers (recursively for mappings), recording sources."""
    if isinstance(node, dict) and "value" in node:
        bad = set(node) - {"value", "source"}
        if bad:
            raise ValueError(f"{where}: field '{dotted}' has unexpected key(s) {sorted(bad)}")
        if "source" in node:
            sources[dotted] = node["source"]
        node = node["value"]
        if not isinstance(node, dict):
            return node
        return {k: _value(v, f"{dotted}.{k}", {}, where) for k, v in node.items()}
    if isinstance(node, dict):
        return {k: _value(v, f"{dotted}.{k}", sources, where) for k, v in node.items()}
    return node


def _coerce(value, tp, dotted, where):
    args = typing.get_args(tp) if isinstance(tp, types.UnionType) else (tp,)
    if value is None:
        if type(None) in args:
            return None
        raise ValueError(f"{where}: field '{dotted}' must not be null")
    base = next(a for a in args if a is not type(None))
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if base is bool and isinstance(value, bool):
        return value
    if base is int and number and float(value).is_integer():
        return int(value)
    if base is float and number:
        return float(value)
    if base is str and isinstance(value, str):
        return value
    if base is tuple and isinstance(value, (list, tuple)):
        return tuple(value)
    if base is dict and isinstance(value, dict):
        return value
    raise ValueError(f"{where}: field '{dotted}' must be {base.__name__}, got {value!r}")
