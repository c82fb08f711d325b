"""Chip data files and their loader (trnsim.chips).

Expected figures are typed in here from the project's hardware notes (hardware.md) and
nki-api.md §3, independently of the JSON files.
"""

import dataclasses
import importlib.resources
import json

import pytest

from trnsim.chips import (Chip, CoreSpec, DmaSpec, EngineSpec, TensorEngineSpec,
                          available_chips, load_chip)

KiB, MiB, GiB = 1024, 1024 ** 2, 1024 ** 3
ENV = "NEURON_PLATFORM_TARGET_OVERRIDE"


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)


def _raw(name):
    return json.loads(importlib.resources.files("trnsim.chips").joinpath(f"{name}.json").read_text())


def _plain(node):
    """The same document with every {"value", "source"} wrapper stripped."""
    if isinstance(node, dict):
        if "value" in node:
            return _plain(node["value"])
        return {k: _plain(v) for k, v in node.items()}
    return node


# ------------------------------------------------------------ figures

def test_available_chips():
    assert available_chips() == ["trn1", "trn2", "trn3"]


@pytest.mark.parametrize("name,gen,core,ncs,hbm,stacks,sbuf_kib,usable", [
    ("trn1", 2, "NeuronCore-v2", 2, 32 * GiB, 2, 192, 180224),
    ("trn2", 3, "NeuronCore-v3", 8, 96 * GiB, 4, 224, 212984),
    ("trn3", 4, "NeuronCore-v4", 8, 144 * GiB, 4, 256, 245752),
])
def test_memory_and_identity(name, gen, core, ncs, hbm, stacks, sbuf_kib, usable):
    c = load_chip(name)
    assert isinstance(c, Chip) and isinstance(c.core, CoreSpec)
    assert (c.name, c.generation, c.nc_version, c.core_name) == (name, gen, f"gen{gen}", core)
    assert c.cores_per_chip == ncs
    assert c.hbm_bytes == hbm and c.hbm_stacks == stacks
    k = c.core
    assert k.partitions == 128
    assert k.sbuf_bytes_per_partition == sbuf_kib * KiB
    assert k.partitions * k.sbuf_bytes_per_partition == {2: 24, 3: 28, 4: 32}[gen] * MiB
    assert k.sbuf_usable_bytes_per_partition == usable
    assert k.psum_bytes_per_partition == 16 * KiB
    assert (k.psum_banks, k.psum_bank_bytes) == (8, 2048)
    assert k.psum_banks * k.psum_bank_bytes == k.psum_bytes_per_partition
    assert k.partitions * k.psum_bytes_per_partition == 2 * MiB
    assert k.sbuf_align_bytes == 4  # public trn2 kernels use 4-byte-aligned SBUF addresses
    assert "choice" in c.sources["core.sbuf_align_bytes"]


def test_trn3_sbuf_per_partition():
    assert load_chip("trn3").core.sbuf_bytes_per_partition == 262144


@pytest.mark.parametrize("name,pe,vec,act,pool", [
    ("trn1", 2.8e9, 1.12e9, 1.4e9, 1.4e9),
    ("trn2", 2.4e9, 0.96e9, 1.2e9, 1.2e9),
    ("trn3", 2.4e9, 1.2e9, 1.2e9, 1.2e9),
])
def test_clocks(name, pe, vec, act, pool):
    k = load_chip(name).core
    assert k.tensor.clock_hz == pytest.approx(pe)
    assert k.vector.clock_hz == pytest.approx(vec)
    assert k.scalar.clock_hz == pytest.approx(act)
    assert k.gpsimd.clock_hz == pytest.approx(pool)


def test_trn1_tensor_clock():
    assert load_chip("trn1").core.tensor.clock_hz == 2.8e9


@pytest.mark.parametrize("name,bw,stack_bw,dma_chip,link,cc", [
    ("trn1", 820e9, 410e9, 1e12, 384e9, 6),
    ("trn2", 2.9e12, 725e9, 3.5e12, 1.28e12, 16),
    ("trn3", 4.9e12, 1.225e12, 4.9e12, 2.56e12, 16),
])
def test_chip_bandwidths(name, bw, stack_bw, dma_chip, link, cc):
    c = load_chip(name)
    assert c.hbm_bandwidth == pytest.approx(bw)
    assert c.hbm_stack_bandwidth == pytest.approx(stack_bw, rel=0.02)
    assert c.chip_dma_bandwidth == pytest.approx(dma_chip)
    assert c.link_bandwidth == pytest.approx(link)
    assert c.cc_cores == cc
    assert isinstance(c.link_topology, str) and c.link_topology
    # docs disagree on these; the other figure must be named in the source
    if name == "trn2":
        assert "3TB/s" in c.sources["hbm_bandwidth"] and "20" in c.sources["cc_cores"]
    if name == "trn3":
        assert "4.7" in c.sources["hbm_bandwidth"] and "20" in c.sources["cc_cores"]


@pytest.mark.parametrize("name", ["trn1", "trn2", "trn3"])
def test_tensor_engine(name):
    c = load_chip(name)
    t = c.core.tensor
    gen = c.generation
    assert isinstance(t, TensorEngineSpec)
    assert (t.rows, t.cols, t.stationary_fmax, t.contraction_max) == (128, 128, 128, 128)
    assert t.moving_fmax_fp32 == (4096 if gen == 4 else 512)
    assert t.moving_fmax_16bit == (8192 if gen == 4 else 512)
    assert (t.min_ii_cycles, t.fp32_cost_factor, t.fast_load_stationary_factor) == (64, 4, 4)
    assert t.supports_double_row is (gen >= 3)
    assert t.supports_mx is (gen == 4)
    assert t.supports_e4m3fn is (gen == 4)
    assert t.supports_bf16_psum is (gen == 4)
    assert list(t.tile_sizes) == ([128, 64] if gen == 2 else [128, 64, 32])
    # per-NC peaks: 92/23 TFLOPS (NC-v2), 79/158/20 (NC-v3), 79/315 MX/20 (NC-v4)
    bf16 = {2: 92e12, 3: 79e12, 4: 79e12}[gen]
    assert t.peak_bf16_flops == pytest.approx(bf16, rel=0.01)
    assert t.peak_bf16_flops == pytest.approx(128 * 128 * 2 * t.clock_hz)
    assert t.peak_fp32_flops == pytest.approx({2: 23e12, 3: 20e12, 4: 20e12}[gen], rel=0.02)
    if gen == 2:
        assert t.peak_fp8_flops == pytest.approx(t.peak_bf16_flops)  # cFP8 at BF16 rate
        assert t.peak_mx_flops is None
        assert t.warmup_throttle is None
    else:
        assert t.peak_fp8_flops == pytest.approx(158e12, rel=0.01)
        assert t.warmup_throttle["start_fraction"] == 0.5
        assert t.warmup_throttle["ramp_ns"] == 3000
        assert t.warmup_throttle["window_ns"] == 3000
    if gen == 3:
        assert t.peak_mx_flops is None
    if gen == 4:
        assert t.peak_mx_flops == pytest.approx(315e12, rel=0.01)


@pytest.mark.parametrize("name,vec,vec16,act,act16,pool", [
    ("trn1", 128, 128, 128, 128, 128),
    ("trn2", 256, 512, 128, 128, 128),
    ("trn3", 256, 512, 128, 256, 128),
])
def test_engines(name, vec, vec16, act, act16, pool):
    k = load_chip(name).core
    for e in (k.vector, k.scalar, k.gpsimd):
        assert isinstance(e, EngineSpec)
        assert e.lanes == 128 and e.min_ii_cycles == 64
        assert e.static_overhead_cycles == 60
        assert e.dependent_issue_overhead_cycles == 100
        assert isinstance(e.elements_per_cycle, int)
    assert (k.vector.elements_per_cycle, k.vector.elements_per_cycle_16bit) == (vec, vec16)
    assert (k.scalar.elements_per_cycle, k.scalar.elements_per_cycle_16bit) == (act, act16)
    assert k.gpsimd.elements_per_cycle == pool
    g = k.gpsimd.extras
    assert g["cores"] == 8 and g["start_cycles"] == 150 and g["min_ii_dynamic_cycles"] == 600


def test_engine_extras_by_generation():
    v2, v3, v4 = (load_chip(n).core for n in ("trn1", "trn2", "trn3"))
    assert "perf_mode_speedup_contiguous_16bit" not in v2.vector.extras
    assert v3.vector.extras["perf_mode_speedup_contiguous_16bit"] == 4
    assert v3.vector.extras["perf_mode_speedup_other"] == 2
    assert v4.vector.extras["exponential_speedup_vs_scalar"] == 4
    assert "exponential_speedup_vs_scalar" not in v3.vector.extras
    assert v2.vector.extras["sbuf_port_shared_with_gpsimd"] is True
    assert v3.vector.extras["sbuf_port_shared_with_gpsimd"] is False
    assert v3.gpsimd.extras["integrated_dma_bandwidth"] == pytest.approx(307e9)


@pytest.mark.parametrize("name,per_engine,aggregate", [
    ("trn1", 17e9, 272e9), ("trn2", 23e9, 368e9), ("trn3", 33e9, 528e9),
])
def test_dma(name, per_engine, aggregate):
    d = load_chip(name).core.dma
    assert isinstance(d, DmaSpec)
    assert (d.engines, d.queues_per_engine, d.partitions_per_engine) == (16, 16, 8)
    assert d.bandwidth_per_engine == pytest.approx(per_engine)
    assert d.aggregate_bandwidth == pytest.approx(aggregate)
    assert d.aggregate_bandwidth == pytest.approx(d.engines * d.bandwidth_per_engine)
    assert (d.fixed_cost_ns, d.dge_cost_ns) == (1300, 600)
    assert (d.efficient_bytes_per_partition, d.saturating_bytes_per_partition) == (2048, 4096)
    assert d.packet_bytes == 4096


# ------------------------------------------------------------ selection

@pytest.mark.parametrize("alias,name", [
    ("trn1", "trn1"), ("inf2", "trn1"), ("gen2", "trn1"), ("TRN2", "trn2"),
    ("gen3", "trn2"), ("trn3", "trn3"), ("Gen4", "trn3"),
])
def test_aliases(alias, name):
    assert load_chip(alias).name == name


def test_default_is_trn2():
    assert load_chip().name == "trn2"
    assert load_chip(None).name == "trn2"


@pytest.mark.parametrize("env,name", [("gen4", "trn3"), ("inf2", "trn1"), ("trn2", "trn2")])
def test_env_override(monkeypatch, env, name):
    monkeypatch.setenv(ENV, env)
    assert load_chip().name == name


def test_explicit_name_beats_env(monkeypatch):
    monkeypatch.setenv(ENV, "gen4")
    assert load_chip("trn1").name == "trn1"


def test_chip_passthrough_and_cache():
    c = load_chip("trn2")
    assert load_chip(c) is c
    assert load_chip("gen3") is c
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.cores_per_chip = 3
    hash(c)


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError) as e:
        load_chip("trn9")
    for n in ("trn1", "inf2", "gen2", "trn2", "gen3", "trn3", "gen4"):
        assert n in str(e.value)


def test_env_unknown_name(monkeypatch):
    monkeypatch.setenv(ENV, "bogus")
    with pytest.raises(ValueError, match="trn2"):
        load_chip()


# ------------------------------------------------------------ user files

def test_user_file_with_plain_values(tmp_path):
    doc = _plain(_raw("trn2"))
    doc["name"] = "trn2-big"
    doc["core"]["sbuf_bytes_per_partition"] = 512 * KiB
    doc["core"]["sbuf_usable_bytes_per_partition"] = 500000
    p = tmp_path / "big.json"
    p.write_text(json.dumps(doc))
    c = load_chip(str(p))
    assert c.name == "trn2-big" and c.generation == 3
    assert c.core.sbuf_bytes_per_partition == 512 * KiB
    assert c.core.sbuf_usable_bytes_per_partition == 500000
    assert c.core.tensor.clock_hz == 2.4e9
    assert c.core.tensor.warmup_throttle["ramp_ns"] == 3000
    assert c.path == str(p)
    assert c.sources == {}
    assert load_chip(p).core.sbuf_bytes_per_partition == 512 * KiB  # PathLike too
    assert load_chip("trn2").core.sbuf_bytes_per_partition == 224 * KiB  # builtin untouched


def test_user_file_via_env(tmp_path, monkeypatch):
    doc = _raw("trn3")
    doc["name"] = "mine"
    p = tmp_path / "mine.json"
    p.write_text(json.dumps(doc))
    monkeypatch.setenv(ENV, str(p))
    c = load_chip()
    assert c.name == "mine" and c.core.tensor.supports_mx
    assert c.sources["core.tensor.clock_hz"]


def test_user_file_optional_fields_may_be_omitted(tmp_path):
    doc = _plain(_raw("trn1"))
    del doc["core"]["tensor"]["peak_mx_flops"]
    del doc["core"]["tensor"]["warmup_throttle"]
    del doc["core"]["vector"]["extras"]
    p = tmp_path / "min.json"
    p.write_text(json.dumps(doc))
    c = load_chip(p)
    assert c.core.tensor.peak_mx_flops is None and c.core.vector.extras == {}


@pytest.mark.parametrize("section,field", [
    (("core", "tensor"), "clock_hz"),
    (("core",), "psum_banks"),
    (("chip",), "hbm_bandwidth"),
    ((), "nc_version"),
])
def test_missing_field_is_named(tmp_path, section, field):
    doc = _plain(_raw("trn2"))
    node = doc
    for s in section:
        node = node[s]
    del node[field]
    p = tmp_path / "broken.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError) as e:
        load_chip(str(p))
    assert field in str(e.value) and str(p) in str(e.value)


def test_wrong_type_and_unknown_field(tmp_path):
    doc = _plain(_raw("trn2"))
    doc["core"]["psum_banks"] = "eight"
    p = tmp_path / "bad.json"
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="psum_banks"):
        load_chip(p)
    doc = _plain(_raw("trn2"))
    doc["core"]["sbuf_byte_per_partition"] = 1
    p.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="sbuf_byte_per_partition"):
        load_chip(p)


def test_missing_file():
    with pytest.raises(FileNotFoundError):
        load_chip("/nonexistent/chip.json")


# ------------------------------------------------------------ provenance

def _leaves(node, path=""):
    """(dotted path, leaf object) for every leaf below a section."""
    assert isinstance(node, dict), path
    if "value" in node:
        yield path, node
        return
    for k, v in node.items():
        yield from _leaves(v, f"{path}.{k}" if path else k)


@pytest.mark.parametrize("name", ["trn1", "trn2", "trn3"])
def test_every_leaf_has_a_source(name):
    doc = _raw(name)
    assert doc["name"] == name
    leaves = list(_leaves(doc["chip"], "chip")) + list(_leaves(doc["core"], "core"))
    assert len(leaves) > 80
    for path, leaf in leaves:
        assert set(leaf) == {"value", "source"}, path
        assert isinstance(leaf["source"], str) and leaf["source"].strip(), path
    # every source ends up in Chip.sources, keyed by attribute path
    c = load_chip(name)
    assert len(c.sources) == len(leaves)
    assert all(s.strip() for s in c.sources.values())
    assert "hardware.md" in c.sources["core.tensor.clock_hz"]
    assert "nki-api.md" in c.sources["core.sbuf_usable_bytes_per_partition"]


def test_sources_attribute_paths_resolve():
    c = load_chip("trn3")
    for dotted in c.sources:
        obj = c
        for part in dotted.split("."):
            obj = obj[part] if isinstance(obj, dict) else getattr(obj, part)
