"""Topology files and routes (trnsim.fabric.topology), checked by hand."""

import json
from pathlib import Path

import pytest

from trnsim.fabric.topology import available_topologies, load_topology

EXAMPLE = Path(__file__).parent / "data" / "fabric_2x2_torus.json"


def names(topo, route):
    return [topo.links[i].name for i in route]


def test_every_builtin_loads_with_a_source_for_every_number():
    for name in available_topologies():
        topo = load_topology(name)
        assert topo.name == name and topo.chip in ("trn1", "trn2", "trn3")
        raw = json.loads(Path(topo.path).read_text())
        numbered = {k for k in raw if k not in ("name", "description")}
        assert numbered <= set(topo.sources), (name, numbered - set(topo.sources))
        assert all(topo.sources[k].strip() for k in numbered)


def test_builtin_sizes_and_link_counts():
    sizes = {"trn1-16": 16, "trn2-16": 16, "trn2-ultraserver": 64,
             "trn3-ultraserver-64": 64, "trn3-ultraserver-144": 144}
    for name, chips in sizes.items():
        topo = load_topology(name)
        assert topo.num_chips == chips
        per_chip = {"torus": 2 * sum(d > 1 for d in topo.dims), "switch": 2}[topo.kind]
        assert len(topo.links) == chips * (per_chip + 1)      # + one local link each
    us = load_topology("trn2-ultraserver")
    assert us.dims == (4, 4, 4) and us.dim_bandwidth == (128, 128, 64)
    # 1024 GB/s over 4 neighbours x 2 directions; 256 GB/s over 2 x 2
    assert load_topology("trn2-16").links[0].bandwidth == 1024 / 8
    assert load_topology("trn3-ultraserver-144").links[0].bandwidth == 2560 / 2


def test_torus_routes_dimension_order_wraparound_and_ties():
    topo = load_topology("trn2-16")              # chip = x + 4 y
    assert topo.chip_route(5, 5) == ()
    assert names(topo, topo.chip_route(0, 3)) == ["chip0->chip3 (x-)"]           # wraparound
    assert names(topo, topo.chip_route(0, 15)) == ["chip0->chip3 (x-)", "chip3->chip15 (y-)"]
    # distance 2 is a tie: "+" from an even coordinate, "-" from an odd one; x before y
    assert names(topo, topo.chip_route(0, 10)) == [
        "chip0->chip1 (x+)", "chip1->chip2 (x+)", "chip2->chip6 (y+)", "chip6->chip10 (y+)"]
    assert names(topo, topo.chip_route(1, 3)) == ["chip1->chip0 (x-)", "chip0->chip3 (x-)"]
    hops = [len(topo.chip_route(a, b)) for a in range(16) for b in range(16)]
    assert max(hops) == 4 and sum(hops) == 256 * 2     # mean ring distance 1 per dimension


def test_switch_routes_are_two_links_and_local_routes_one():
    # every rank route starts with the sender's DMA engines (Placement.links)
    place = load_topology("trn3-ultraserver-64").placement(64)
    assert names(place, place.route(3, 7)) == ["rank3 DMA", "chip3->switch", "switch->chip7"]
    assert place.route(4, 4) == ()
    assert place.links[place.route(3, 7)[0]].bandwidth == 528       # one NeuronCore-v4
    place = load_topology("trn2-16").placement(32)    # 2 ranks per chip: 0, 1 on chip 0
    assert place.chip_of(1) == 0 and place.chip_of(2) == 1
    assert names(place, place.route(0, 1)) == ["rank0 DMA", "chip0 local"]
    assert names(place, place.route(1, 2)) == ["rank1 DMA", "chip0->chip1 (x+)"]


def test_placement_rules():
    topo = load_topology("trn2-16")
    assert topo.placement(5).ranks_per_chip == 1
    assert topo.placement(128).ranks_per_chip == 8
    with pytest.raises(ValueError, match="divide"):
        topo.placement(24)
    with pytest.raises(ValueError, match="8 NeuronCores"):
        topo.placement(256)
    with pytest.raises(ValueError, match="out of range"):
        topo.placement(4).chip_of(4)


def test_user_file_by_path_and_errors(tmp_path):
    topo = load_topology(str(EXAMPLE))
    assert topo.name == "example-2x2" and topo.num_chips == 4 and topo.sources["dims"] == "example"
    # size-2 dimensions: "+" and "-" are two links to one neighbour; the tie goes "+" from 0
    assert names(topo, topo.chip_route(0, 3)) == ["chip0->chip1 (x+)", "chip1->chip3 (y+)"]
    assert names(topo, topo.chip_route(3, 0)) == ["chip3->chip2 (x-)", "chip2->chip0 (y-)"]
    data = json.loads(EXAMPLE.read_text())
    for change, message in [({"bogus": 1}, "unknown field"), ({"kind": "mesh"}, "kind"),
                            ({"link_bandwidth": [1]}, "one value per dimension"),
                            ({"reduce_bandwidth": 0}, "positive")]:
        path = tmp_path / "t.json"
        path.write_text(json.dumps({**data, **change}))
        with pytest.raises(ValueError, match=message):
            load_topology(path)
    with pytest.raises(ValueError, match="unknown topology"):
        load_topology("trn9")
