"""A multi-rank run: one kernel, SPMD, on `world_size` ranks (NeuronCores, one Run
each: its own chip state, HBM and record), as `nki.multi_rank_simulate` runs it.

The ranks run as cooperative threads on one CoreScheduler (a rank's logical cores are
workers of it too), handing over only where one blocks: in a collective until its
group has arrived (`World.exchange`), or in a core_barrier / sendrecv. So a run is
deterministic, and a rank that never joins a collective ends the run with a
CoreDeadlockError naming each rank's line."""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import NkiValidationError
from .gc_pause import gc_paused
from .runtime import CoreScheduler, Options, Run, _local, strict_from_env


@dataclass
class Arrival:
    """What one rank brings to a collective: its values (None in timing-only runs),
    what must agree across the group (`signature`, e.g. op, shapes, dtypes) and where."""
    rank: int
    values: object
    signature: tuple
    location: object
    describe: str = ""


@dataclass
class World:
    """The ranks of a multi-rank run and their collective rendezvous."""
    size: int
    scheduler: CoreScheduler
    # (group, sequence number) -> {rank: Arrival}
    slots: dict = field(default_factory=dict)
    taken: dict = field(default_factory=dict)  # same key -> ranks that have read it
    seq: dict = field(default_factory=dict)  # (rank, group) -> next sequence number

    def next_seq(self, rank: int, group: tuple) -> int:
        k = self.seq.get((rank, group), 0)
        self.seq[(rank, group)] = k + 1
        return k

    def exchange(self, group: tuple, seq: int, arrival: Arrival, what: str) -> dict:
        """Post `arrival` for collective `seq` of `group` and wait for every member's;
        returns {rank: Arrival}. A member whose signature differs from the first
        arrival's fails here, naming both ranks' lines."""
        key = (group, seq)
        slot = self.slots.setdefault(key, {})
        if arrival.rank in slot:
            raise NkiValidationError(
                f"rank {arrival.rank} issues collective #{seq} of replica group "
                f"{list(group)} a second time (first at {slot[arrival.rank].location}): "
                "with LNC=2 both cores of a rank run the kernel; collectives in an LNC=2 "
                "kernel are not simulated yet")
        first = next(iter(slot.values()), None)
        if first is not None and first.signature != arrival.signature:
            raise NkiValidationError(
                f"rank {arrival.rank} issues {arrival.describe} while rank {first.rank} "
                f"issued {first.describe} at {first.location} as the same collective "
                f"(#{seq} of replica group {list(group)}): every rank of a group must issue "
                "the same collective with the same shapes, dtypes and arguments")
        slot[arrival.rank] = arrival
        self.scheduler.block_until(lambda: len(slot) == len(group), what)
        taken = self.taken.setdefault(key, set())
        taken.add(arrival.rank)
        if len(taken) == len(group):  # everyone has its result: forget the slot
            del self.slots[key], self.taken[key]
        return slot


def _inputs_of(per_rank_inputs, world_size: int) -> list:
    if isinstance(per_rank_inputs, Mapping):
        missing = [r for r in range(world_size) if r not in per_rank_inputs]
        if missing or len(per_rank_inputs) != world_size:
            raise ValueError(f"per_rank_inputs must have one key per rank 0..{world_size - 1}"
                             f" (missing {missing})")
        items = [per_rank_inputs[r] for r in range(world_size)]
    else:
        items = list(per_rank_inputs)
        if len(items) != world_size:
            raise ValueError(f"per_rank_inputs has {len(items)} entries for world_size="
                             f"{world_size}")
    out = []
    for r, item in enumerate(items):
        try:
            args, kwargs = item
        except (TypeError, ValueError):
            raise ValueError(f"per_rank_inputs[{r}] must be an (args, kwargs) pair") from None
        out.append((tuple(args), dict(kwargs or {})))
    return out


def _check_inputs_agree(inputs: list, names: list) -> None:
    """Every rank runs one compiled kernel: tensor arguments may differ between ranks in
    value only (same shape and dtype), other arguments not at all."""
    args0, kwargs0 = inputs[0]
    for r, (args, kwargs) in enumerate(inputs[1:], 1):
        if len(args) != len(args0) or set(kwargs) != set(kwargs0):
            raise ValueError(f"per_rank_inputs: rank {r} passes {len(args)} arguments and "
                             f"keywords {sorted(kwargs)}, rank 0 {len(args0)} and "
                             f"{sorted(kwargs0)}; every rank takes the same arguments")
        for name, a, b in [*zip(names, args0, args), *((k, kwargs0[k], kwargs[k])
                                                       for k in kwargs0)]:
            _same_argument(f"argument {name!r}", a, b, r)


def _same_argument(what: str, a, b, rank: int) -> None:
    if _is_tensor(a) or _is_tensor(b):
        da, db = _tensor_type(a), _tensor_type(b)
        if da != db:
            raise ValueError(f"per_rank_inputs: rank {rank}'s {what} is {db}, rank 0's "
                             f"{da}: tensor arguments may differ between ranks in value "
                             "only, not in shape or dtype")
    elif isinstance(a, (list, tuple)) and type(a) is type(b) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            _same_argument(f"{what}[{i}]", x, y, rank)
    elif not _equal(a, b):
        raise ValueError(f"per_rank_inputs: rank {rank}'s {what} is {b!r}, rank 0's "
                         f"{a!r}: arguments other than tensors must be equal on every rank")


def _is_tensor(x) -> bool:
    return not isinstance(x, type) and hasattr(x, "shape") and hasattr(x, "dtype")


def _tensor_type(x) -> str:
    if not _is_tensor(x):
        return f"not a tensor ({type(x).__name__})"
    return f"a tensor of shape {tuple(x.shape)} and dtype {x.dtype}"


def _equal(a, b) -> bool:
    try:
        return bool(a == b)
    except Exception:  # an object whose == is not a plain truth value
        return a is b


def run_ranks(fn, per_rank_inputs, *, world_size: int, lnc: int = 1, chip=None,
              numerics: bool = True, strict=None):
    """Run `fn` on `world_size` ranks, rank r with its (args, kwargs) from
    `per_rank_inputs` (a sequence in rank order, or a mapping rank -> pair). Returns
    (outputs per rank, Runs per rank); each Run's program is compiled."""
    from .launch import HostArgs, param_names
    if not isinstance(world_size, int) or world_size < 1:
        raise ValueError(f"world_size={world_size!r} must be a positive int")
    inputs = _inputs_of(per_rank_inputs, world_size)
    names = param_names(fn, len(inputs[0][0]))  # every rank's arguments agree
    _check_inputs_agree(inputs, names)
    if strict is None:
        strict = strict_from_env()
    # loop expansion would append a collective's instructions without the rendezvous
    options = Options(numerics, bool(strict), expand=False)
    scheduler = CoreScheduler(world_size * lnc, label=lambda i: (
        f"rank {i // lnc}" + (f" core {i % lnc}" if lnc > 1 else "")), between="ranks")
    world = World(world_size, scheduler)
    runs = []
    for r in range(world_size):
        run = Run(chip, lnc, options)
        run.rank, run.world, run.scheduler = r, world, scheduler
        runs.append(run)
    hosts = [HostArgs(run) for run in runs]
    device_args = [None] * world_size

    def setup(i):
        _local.worker, _local.core_id, _local.run = i, i % lnc, runs[i // lnc]

    def body(i):
        r = i // lnc
        if device_args[r] is None:  # the rank's first core brings its inputs in
            args, kwargs = inputs[r]
            device_args[r] = ([hosts[r].to_device(a, n) for a, n in zip(args, names)],
                              {k: hosts[r].to_device(v, k) for k, v in kwargs.items()})
        a, kw = device_args[r]
        return fn(*a, **kw)

    try:
        with gc_paused():
            results = scheduler.run(body, setup)
    finally:
        _local.run = None
        _local.core_id = None
        _local.worker = 0
    outputs = []
    for r, run in enumerate(runs):
        _local.run = run
        try:
            outputs.append(hosts[r].to_host(results[r * lnc]))
        finally:
            _local.run = None
        run.compile()
        hosts[r].write_back()
    return outputs, runs
