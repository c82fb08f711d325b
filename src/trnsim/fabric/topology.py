"""Chip-to-chip fabrics (topologies) loaded from JSON data files.

A topology is data: a chip name, a kind ("torus" or "switch") and, for every
number, ``{"value": ..., "source": "..."}`` (sources end up in
``Topology.sources`` keyed by field name, as for ``trnsim.chips``).  Built-in
files live in ``fabric/topologies/``; ``load_topology`` also takes a path to a
user's file with the same schema (a hypothetical system is a data file, not
code).

Links are *directed*; bandwidths are bytes per ns (== GB/s) in one direction.
A chip's published NeuronLink figure (hardware.md §1) is read as the sum over
its links and both directions, so the built-in files split it evenly: e.g.
Trn2's 1024 GB/s over 4 torus neighbours is 128 GB/s per directed link (the
sources in each file say so).

``Topology.placement(n)`` puts ranks on chips: one per chip (rank r on chip r)
while n <= num_chips, otherwise n / num_chips consecutive ranks per chip (n
must divide evenly and not exceed the chip's NeuronCores).

* torus: ``dims`` (e.g. [4, 4] or [4, 4, 4]); chip id = x + X*(y + Y*z).  Each
  chip has a "+" and a "-" link in every dimension longer than 1, with that
  dimension's ``link_bandwidth`` and ``link_latency_ns``.  Routing is
  dimension order (x, then y, then z), shortest way round each ring.  A tie
  (distance exactly half the ring) goes "+" from an even coordinate and "-"
  from an odd one: deterministic, and it spreads half-way traffic over both
  directions instead of loading only the "+" links.
* switch: every chip has an up-link to and a down-link from one non-blocking
  switch; a route is (up-link of src chip, down-link of dst chip).
* every chip also has one "local" link (``intra_chip_bandwidth``) shared by all
  transfers between ranks placed on that chip.
* a rank is one NeuronCore, whose 16 DMA engines move everything it sends:
  ``Placement.links`` appends one "rank r DMA" link per rank (the chip file's
  ``core.dma.aggregate_bandwidth``, 272 / 368 / 528 GB/s on Trn1/2/3) and every
  route starts with the sender's.  So one rank per Trn3 chip cannot fill the
  chip's 1280 GB/s to the switch; four can.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass, field

import numpy as np

from ..chips import json_object, load_chip, load_named_or_file

__all__ = ["Link", "Topology", "Placement", "load_topology", "available_topologies"]

_BUILTIN = ("trn1-16", "trn2-16", "trn2-ultraserver",
            "trn3-ultraserver-64", "trn3-ultraserver-144")
_COMMON = {"name", "description", "chip", "kind", "intra_chip_bandwidth",
           "intra_chip_latency_ns", "reduce_bandwidth", "step_overhead_ns",
           "launch_overhead_ns"}
_BY_KIND = {"torus": {"dims", "link_bandwidth", "link_latency_ns"},
            "switch": {"num_chips", "uplink_bandwidth", "downlink_bandwidth",
                       "link_latency_ns"}}
_DIM_NAMES = "xyzw"


@dataclass(frozen=True)
class Link:
    name: str
    bandwidth: float      # bytes/ns, one direction
    latency_ns: float


@dataclass(frozen=True, eq=False)
class Topology:
    name: str
    chip: str
    kind: str
    num_chips: int
    links: tuple
    intra_chip_bandwidth: float
    intra_chip_latency_ns: float
    reduce_bandwidth: float   # bytes/ns one rank's CC cores reduce (add) at
    step_overhead_ns: float   # fixed cost of each algorithm step
    launch_overhead_ns: float  # fixed cost of each collective
    dims: tuple = ()
    dim_bandwidth: tuple = ()  # torus: link bandwidth of each dimension
    description: str = ""
    sources: dict = field(default_factory=dict, repr=False)
    path: str | None = None

    # link-id layout: torus: chip-major, then dimension, then (+, -); switch:
    # chip-major (up, down); then one local link per chip.
    def local_link(self, chip: int) -> int:
        return len(self.links) - self.num_chips + chip

    def coords(self, chip: int) -> tuple:
        return tuple(_coords_of(chip, self.dims))

    def chip_route(self, src: int, dst: int) -> tuple:
        """Link ids from chip src to chip dst (not the local link)."""
        return _chip_route(self, src, dst)

    def max_ranks_per_chip(self) -> int:
        return load_chip(self.chip).cores_per_chip

    def rank_dma_bandwidth(self) -> float:
        """Bytes/ns one rank's (one NeuronCore's) DMA engines move."""
        return self._dma_bandwidth

    @functools.cached_property
    def _dma_bandwidth(self) -> float:
        return load_chip(self.chip).core.dma.aggregate_bandwidth / 1e9

    @functools.cached_property
    def _bandwidths(self) -> np.ndarray:
        return np.array([link.bandwidth for link in self.links], dtype=float)

    @functools.cached_property
    def _chip_routes(self) -> "_ChipRoutes":
        return _ChipRoutes(self)

    def placement(self, num_ranks: int) -> "Placement":
        num_ranks = int(num_ranks)
        if num_ranks < 1:
            raise ValueError(f"{self.name}: need at least one rank, got {num_ranks}")
        if num_ranks <= self.num_chips:
            return Placement(self, num_ranks, 1)
        if num_ranks % self.num_chips:
            raise ValueError(
                f"{self.name}: {num_ranks} ranks do not divide evenly over its "
                f"{self.num_chips} chips (use at most {self.num_chips} ranks or a multiple)")
        per_chip = num_ranks // self.num_chips
        limit = self.max_ranks_per_chip()
        if per_chip > limit:
            raise ValueError(
                f"{self.name}: {num_ranks} ranks would put {per_chip} ranks on each chip, "
                f"but a {self.chip} chip has {limit} NeuronCores (at most "
                f"{limit * self.num_chips} ranks)")
        return Placement(self, num_ranks, per_chip)


@functools.lru_cache(maxsize=None)
def _chip_route(topo: Topology, src: int, dst: int) -> tuple:
    if src == dst:
        return ()
    if topo.kind == "switch":
        return (2 * src, 2 * dst + 1)
    route, here = [], list(topo.coords(src))
    target = topo.coords(dst)
    for d, size in enumerate(topo.dims):
        ahead = (target[d] - here[d]) % size
        if ahead == 0:
            continue
        behind = size - ahead
        plus = ahead < behind or (ahead == behind and here[d] % 2 == 0)
        for _ in range(ahead if plus else behind):
            route.append(_torus_link(topo, _chip_id_of(here, topo.dims), d, plus))
            here[d] = (here[d] + (1 if plus else -1)) % size
    return tuple(route)


def _torus_link(topo: Topology, chip: int, dim: int, plus: bool) -> int:
    active = [d for d, size in enumerate(topo.dims) if size > 1]
    return (chip * len(active) + active.index(dim)) * 2 + (0 if plus else 1)


@dataclass(frozen=True)
class Placement:
    """Ranks on chips: rank r on chip r // ranks_per_chip (consecutive ranks share a chip)."""
    topology: Topology
    num_ranks: int
    ranks_per_chip: int

    def chip_of(self, rank: int) -> int:
        if not 0 <= rank < self.num_ranks:
            raise ValueError(f"rank {rank} out of range (0..{self.num_ranks - 1})")
        return rank // self.ranks_per_chip

    def route(self, src_rank: int, dst_rank: int) -> tuple:
        """Link ids (into ``self.links``): the sender's DMA, then local or chip-to-chip links."""
        if src_rank == dst_rank:
            return ()
        a, b = self.chip_of(src_rank), self.chip_of(dst_rank)
        dma = (len(self.topology.links) + src_rank,)
        if a == b:
            return dma + (self.topology.local_link(a),)
        return dma + self.topology.chip_route(a, b)

    def routes(self, src, dst) -> tuple:
        """The routes of many flows at once (``src``, ``dst``: rank arrays) as ``(links,
        latency)``: ``links[k]`` holds each route's k-th link id (as ``route``), padded with
        ``num_links`` (an empty route is all padding); ``latency`` each route's sum."""
        topo, pad = self.topology, self.num_links
        src, dst = np.asarray(src, dtype=np.int64), np.asarray(dst, dtype=np.int64)
        same = src == dst
        if len(src) and min(src.min(), dst.min()) < 0 or max(src.max(initial=0),
                                                             dst.max(initial=0)) >= self.num_ranks:
            for a, b in zip(src[~same].tolist(), dst[~same].tolist()):
                self.route(a, b)              # raises for the rank out of range
        pairs = src // self.ranks_per_chip * topo.num_chips + dst // self.ranks_per_chip
        pairs[same] = -1                      # no route
        hops, latency = topo._chip_routes.lookup(pairs)
        dma = np.where(same, pad, len(topo.links) + src)
        return np.minimum(np.concatenate([dma[None], hops]), pad), latency

    @property
    def num_links(self) -> int:
        return len(self.topology.links) + self.num_ranks

    def bandwidths(self) -> np.ndarray:
        """Each link's bandwidth, as ``links``."""
        topo = self.topology
        return np.concatenate([topo._bandwidths, np.full(self.num_ranks, topo._dma_bandwidth)])

    @functools.cached_property
    def links(self) -> tuple:
        """The topology's links, then one DMA link per rank."""
        bandwidth = self.topology.rank_dma_bandwidth()
        return self.topology.links + tuple(Link(f"rank{r} DMA", bandwidth, 0.0)
                                           for r in range(self.num_ranks))


class _ChipRoutes:
    """A topology's chip-to-chip routes as arrays, each worked out when first asked for:
    pair ``a * num_chips + b`` (the local link when a == b; -1: no route) is column
    ``column[pair]`` (-1: not yet) of ``hops`` (row k: the k-th link, past the route's end
    a link id above any) and of ``latency`` (the sum of its links' latencies)."""

    def __init__(self, topo: Topology):
        self.topo = topo
        self.column = np.full(topo.num_chips ** 2 + 1, -1, dtype=np.int64)
        self.column[-1] = 0
        self.hops = np.full((0, 1), _PAST_END, dtype=np.int64)
        self.latency = np.zeros(1)
        self.length = np.zeros(1, dtype=np.int64)

    def lookup(self, pairs: np.ndarray) -> tuple:
        """(hops, latency) of ``pairs``, hops cut to the longest of their routes."""
        column = self.column[pairs]
        if (column < 0).any():
            self._add(np.unique(pairs[column < 0]))
            column = self.column[pairs]
        longest = int(self.length[column].max(initial=0))
        return self.hops[:longest].take(column, axis=1), self.latency[column]

    def _add(self, pairs: np.ndarray) -> None:
        topo = self.topo
        routes = [topo.chip_route(a, b) if a != b else (topo.local_link(a),)
                  for a, b in zip(*(x.tolist() for x in divmod(pairs, topo.num_chips)))]
        hops = np.full((max(len(self.hops), *map(len, routes)), len(self.latency) + len(routes)),
                       _PAST_END, dtype=np.int64)
        hops[:len(self.hops), :len(self.latency)] = self.hops
        for i, route in enumerate(routes, len(self.latency)):
            hops[:len(route), i] = route
        first = len(self.latency)
        self.latency = np.append(self.latency, [sum(topo.links[i].latency_ns for i in route)
                                                for route in routes])
        self.length = np.append(self.length, [len(route) for route in routes])
        self.hops = hops
        self.column[pairs] = np.arange(first, hops.shape[1])  # last: never points past the arrays


_PAST_END = np.iinfo(np.int64).max


def available_topologies() -> list[str]:
    return list(_BUILTIN)


def load_topology(topology) -> Topology:
    """A Topology from a Topology, a built-in name or a path to a JSON file."""
    if isinstance(topology, Topology):
        return topology
    return load_named_or_file(topology, {n: n for n in _BUILTIN}, _load_builtin, _parse,
                              "topology")


@functools.lru_cache(maxsize=None)
def _load_builtin(name: str) -> Topology:
    res = importlib.resources.files(__package__).joinpath("topologies").joinpath(f"{name}.json")
    return _parse(res.read_text(encoding="utf-8"), str(res))


def _parse(text: str, where: str) -> Topology:
    data = json_object(text, where)
    sources, v = {}, {}
    for key, node in data.items():
        if isinstance(node, dict):
            if set(node) - {"value", "source"} or "value" not in node:
                raise ValueError(f"{where}: field '{key}' must be {{\"value\", \"source\"}}")
            if "source" in node:
                sources[key] = node["source"]
            node = node["value"]
        v[key] = node
    kind = v.get("kind")
    if kind not in _BY_KIND:
        raise ValueError(f"{where}: field 'kind' must be 'torus' or 'switch', got {kind!r}")
    allowed = _COMMON | _BY_KIND[kind]
    unknown = {k for k in v if not k.startswith("_")} - allowed
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {sorted(unknown)}")
    missing = (allowed - {"description"}) - set(v)
    if missing:
        raise ValueError(f"{where}: missing field(s) {sorted(missing)}")

    def number(key, value=None):
        x = v[key] if value is None else value
        if isinstance(x, bool) or not isinstance(x, (int, float)) or x < 0:
            raise ValueError(f"{where}: field '{key}' must be a non-negative number, got {x!r}")
        return float(x)

    links = []
    if kind == "torus":
        dims = v["dims"]
        if not (isinstance(dims, list) and dims and all(isinstance(d, int) and d >= 1 for d in dims)):
            raise ValueError(f"{where}: field 'dims' must be a list of positive integers")
        per_dim = {}
        for key in ("link_bandwidth", "link_latency_ns"):
            vals = v[key] if isinstance(v[key], list) else [v[key]] * len(dims)
            if len(vals) != len(dims):
                raise ValueError(f"{where}: field '{key}' needs one value per dimension ({len(dims)})")
            per_dim[key] = [number(key, x) for x in vals]
        if any(b <= 0 for b in per_dim["link_bandwidth"]):
            raise ValueError(f"{where}: field 'link_bandwidth' must be positive")
        num_chips = 1
        for d in dims:
            num_chips *= d
        dims = tuple(dims)
        for chip in range(num_chips):
            for d, size in enumerate(dims):
                if size == 1:
                    continue
                for sign in (1, -1):
                    coords = _coords_of(chip, dims)
                    coords[d] = (coords[d] + sign) % size
                    other = _chip_id_of(coords, dims)
                    links.append(Link(f"chip{chip}->chip{other} ({_DIM_NAMES[d]}{'+' if sign > 0 else '-'})",
                                      per_dim["link_bandwidth"][d], per_dim["link_latency_ns"][d]))
    else:
        dims = ()
        num_chips = v["num_chips"]
        if isinstance(num_chips, bool) or not isinstance(num_chips, int) or num_chips < 1:
            raise ValueError(f"{where}: field 'num_chips' must be a positive integer")
        up, down = number("uplink_bandwidth"), number("downlink_bandwidth")
        lat = number("link_latency_ns")
        if up <= 0 or down <= 0:
            raise ValueError(f"{where}: switch link bandwidths must be positive")
        for chip in range(num_chips):
            links.append(Link(f"chip{chip}->switch", up, lat))
            links.append(Link(f"switch->chip{chip}", down, lat))
    local_bw, local_lat = number("intra_chip_bandwidth"), number("intra_chip_latency_ns")
    links += [Link(f"chip{c} local", local_bw, local_lat) for c in range(num_chips)]
    for key in ("intra_chip_bandwidth", "reduce_bandwidth"):
        if number(key) <= 0:
            raise ValueError(f"{where}: field '{key}' must be positive")
    for key in ("name", "chip"):
        if not isinstance(v[key], str) or not v[key]:
            raise ValueError(f"{where}: field '{key}' must be a non-empty string")
    return Topology(
        name=v["name"], chip=v["chip"], kind=kind, num_chips=num_chips, links=tuple(links),
        intra_chip_bandwidth=local_bw, intra_chip_latency_ns=local_lat,
        reduce_bandwidth=number("reduce_bandwidth"), step_overhead_ns=number("step_overhead_ns"),
        launch_overhead_ns=number("launch_overhead_ns"), dims=dims,
        dim_bandwidth=tuple(per_dim["link_bandwidth"]) if kind == "torus" else (),
        description=str(v.get("description", "")), sources=sources, path=where)


def _coords_of(chip, dims):
    out = []
    for size in dims:
        out.append(chip % size)
        chip //= size
    return out


def _chip_id_of(coords, dims):
    chip, stride = 0, 1
    for c, size in zip(coords, dims):
        chip += c * stride
        stride *= size
    return chip
