"""`trnsim.profile(kernel, *args, ...)`: run a kernel through its front end (the
current API's or the legacy one's) and profile the run. The glue above both front ends
and the profile package, so that each of those imports only what lies below it."""
from __future__ import annotations

import types

from .chips import load_chip
from .legacy import jit as legacy_jit
from .machine import launch
from .machine.runtime import strict_from_env
from .nki.jit import Simulated, _as_kernel, default_chip
from .profile import cache as pcache
from .profile.profile import Profile


def _legacy_kernel(kernel):
    """The LegacyKernel to run, or None for a current-API kernel."""
    if isinstance(kernel, legacy_jit.LegacyKernel):
        return kernel
    fn = getattr(kernel, "fn", kernel)
    if callable(fn) and _uses_legacy_api(fn):
        return legacy_jit.LegacyKernel(fn)
    return None


def _uses_legacy_api(fn) -> bool:
    """A plain function whose code refers to the legacy front end (trnsim.legacy, also
    imported as neuronxcc.nki)."""
    code = getattr(fn, "__code__", None)
    glb = getattr(fn, "__globals__", None)
    if code is None or glb is None:
        return False
    names, stack = set(), [code]
    while stack:
        co = stack.pop()
        names.update(co.co_names)
        stack.extend(k for k in co.co_consts if hasattr(k, "co_names"))
    for n in names:
        v = glb.get(n)
        mod = v.__name__ if isinstance(v, types.ModuleType) else getattr(v, "__module__", "")
        if isinstance(mod, str) and mod.startswith("trnsim.legacy"):
            return True
    return False


def profile(kernel, *args, chip=None, numerics=True, lnc=None, order="compiler",
            cache=None, **kwargs) -> Profile:
    """Run `kernel(*args, **kwargs)` on the simulated chip and profile it.

    `kernel`: a current-API kernel (`@nki.jit`, `kernel[2]`, `nki.simulate(kernel)` or a
    plain function) or a legacy `neuronxcc.nki` kernel (`nki.jit`/`baremetal`/... with its
    SPMD grid; a plain function that uses the legacy API is recognized too).
    `chip`: trn1/trn2/trn3 (None: the kernel's `platform_target` for a legacy kernel,
    else the environment, else trn2). `numerics=False` runs timing only (shapes, checks
    and the record; outputs hold no computed values). `lnc`: logical cores (current
    API; default the kernel's). `order`: "compiler" (the engines run the order the
    compiler model's scheduler issues) or "program" (in-order mode: the kernel's
    program order). `cache`: the kernel-profile cache (trnsim.profile.cache): None (the
    default) looks timing-only calls (numerics=False) up in the process-wide cache and
    stores them, so a repeated call with the same kernel, shapes, dtypes, scalar
    arguments, chip and options is not simulated again; True does so with numerics on as
    well (you do not need the outputs: a hit's are zero placeholders); False never; a
    ProfileCache uses that cache."""
    legacy = _legacy_kernel(kernel)
    if legacy is not None:
        if lnc not in (None, 1):
            raise ValueError(f"lnc={lnc!r}: legacy kernels run on one NeuronCore (their "
                             "SPMD grid instances run one after another)")
        fn, lnc = legacy.fn, 1
        chip = load_chip(chip if chip is not None else legacy.options.get("platform_target"))
        force = bool(legacy.options.get("force_auto_alloc"))

        def simulate():
            return legacy_jit.run_legacy(fn, args, kwargs, legacy.grid, chip=chip,
                                         numerics=numerics, force_auto_alloc=force)
        legacy_key = (tuple(legacy.grid), force)
    else:
        k = _as_kernel(kernel)
        if chip is None and isinstance(kernel, Simulated):
            chip = kernel.chip
        fn, lnc = k.fn, int(lnc or k.lnc)
        chip = load_chip(chip if chip is not None else default_chip())

        def simulate():
            return launch.run_kernel(fn, args, kwargs, lnc=lnc, chip=chip, numerics=numerics)
        legacy_key = None
    name = getattr(fn, "__name__", None)
    store = pcache.active_cache(cache, numerics)
    key = None
    if store is not None:
        try:
            key = pcache.kernel_key(fn, args, kwargs, chip=chip, lnc=lnc, numerics=numerics,
                                    strict=strict_from_env(), order=order,
                                    legacy=legacy_key)
        except pcache.Uncacheable:
            store.note_uncacheable()
        else:
            hit = store.get(key)
            if hit is not None:
                hit.name = name or hit.name
                return hit
    outputs, run = simulate()
    prof = Profile.from_run(run, outputs, name, order)
    if key is not None:
        store.put(key, prof)
        prof.cache, prof.cache_key = "miss", key
    return prof


DEFAULT_TOPOLOGY = {"trn1": "trn1-16", "trn2": "trn2-ultraserver", "trn3": "trn3-ultraserver-64"}


def profile_ranks(kernel, *, world_size: int, per_rank_inputs, topology=None, chip=None,
                  numerics=True, order="compiler") -> "RanksProfile":
    """Run `kernel` SPMD on `world_size` ranks (as `nki.multi_rank_simulate`: rank r with
    its (args, kwargs) of `per_rank_inputs`) and profile the run: each rank on its own
    NeuronCore, its collectives on `topology`'s fabric (a built-in name such as
    "trn2-ultraserver" or "trn3-ultraserver-144", a path to a topology JSON file, or a
    Topology; default: the chip's largest built-in system, or the 144-chip Trn3
    UltraServer for more than 64 Trn3 ranks). `chip` defaults to the topology's.
    Returns a RanksProfile."""
    from .fabric.topology import Topology, load_topology
    from .machine.ranks import run_ranks
    from .profile.ranks import RanksProfile
    from .timing.ranks import schedule_ranks
    if topology is None:
        name = load_chip(chip if chip is not None else default_chip()).name
        topology = DEFAULT_TOPOLOGY[name]
        if name == "trn3" and world_size > 64:
            topology = "trn3-ultraserver-144"
    topo = topology if isinstance(topology, Topology) else load_topology(topology)
    chip = load_chip(chip if chip is not None else topo.chip)
    placement = topo.placement(world_size)
    k = _as_kernel(kernel)
    outputs, runs = run_ranks(k.fn, per_rank_inputs, world_size=world_size, lnc=k.lnc,
                              chip=chip, numerics=numerics)
    timeline = schedule_ranks([r.program for r in runs], placement, chip, order)
    name = getattr(k.fn, "__name__", None)
    ranks = [Profile(run.program, tl, out, run, name)
             for run, tl, out in zip(runs, timeline.timelines, outputs)]
    return RanksProfile(ranks, timeline, placement, name)
