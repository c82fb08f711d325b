"""The `trnsim` command.

    trnsim profile FILE.py::KERNEL [--chip trn2] [--arg NAME=DTYPE[SHAPE] | NAME=VALUE ...]
                   [--inputs file.npz] [--lnc 2] [--numerics | --no-numerics]
                   [--out DIR] [--seed N] [--no-trace] [--no-report] [--json]
                   [--explorer DIR [--explorer-format parquet|json]]
        Runs the kernel on the simulated chip (random inputs unless --inputs gives
        them), prints its summary and insights, and writes the Perfetto trace, the HTML
        report and the summary JSON into --out (default ./trnsim-out/). --explorer
        also writes the profile as Neuron Explorer's tables (<Table>.parquet, or
        <Table>.json) into DIR (trnsim.profile.explorer).

    trnsim compare A B [same options]       two kernels side by side, with ratios
    trnsim compare FILE.py::K --chip trn2 --chip trn3   one kernel on two chips
        (A and B may also carry a chip: FILE.py::K@trn3)
    trnsim compare FILE.py::K --order program --order compiler
        one kernel with its engines in program order (in-order mode) and in the order
        the compiler model's scheduler issues (the default everywhere)

    trnsim chips [--json]                    the chips and their key figures

Inputs: `--arg a=bfloat16[128,512]` makes a random bf16 array of that shape (normal
values for float types, small non-negative integers for integer types; --seed picks
them); `--arg eps=1e-5` passes a Python value. `--inputs file.npz` gives arrays by
parameter name (0-d arrays become scalars); --arg overrides it.

Setting TRNSIM_PROFILE_DIR=dir makes every simulated kernel call of an unmodified script
write its profile there (see trnsim.profile.autosave).
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import json
import os
import re
import shutil
import sys
import threading
import time

from .machine.errors import NkiValidationError

DEFAULT_OUT = "trnsim-out"
_SPEC_RE = re.compile(r"^\s*([A-Za-z_][\w]*)\s*\[\s*([\d\s,x]*)\s*\]\s*$")


class CliError(Exception):
    """A usage error: printed without a traceback, exit status 2."""


# ---------------------------------------------------------------- kernels and inputs

def load_kernel(target: str):
    """(kernel object, its Python function, display name) from `FILE.py::NAME`
    (NAME may be dotted: `FILE.py::module_obj.kernel`)."""
    if "::" not in target:
        raise CliError(f"{target!r}: name the kernel as FILE.py::KERNEL")
    path, _, attr = target.rpartition("::")
    if not os.path.isfile(path):
        raise CliError(f"{path}: no such file")
    path = os.path.abspath(path)
    mod_name = "_trnsim_cli_" + re.sub(r"\W", "_", os.path.splitext(os.path.basename(path))[0])
    cached = sys.modules.get(mod_name)
    if cached is not None and getattr(cached, "__file__", None) == path:
        module = cached
    else:
        spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(spec)
        d = os.path.dirname(path)
        if d not in sys.path:
            sys.path.insert(0, d)
        sys.modules[mod_name] = module
        try:
            spec.loader.exec_module(module)
        except Exception:
            sys.modules.pop(mod_name, None)
            raise
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = sorted(n for n, v in vars(module).items()
                           if callable(v) and not n.startswith("_")
                           and getattr(v, "__module__", mod_name) in (mod_name, None)
                           or _is_kernel(v))
            raise CliError(f"{path} has no {attr!r}; callables there: {', '.join(names)}")
        obj = getattr(obj, part)
    fn = kernel_function(obj)
    return obj, fn, getattr(fn, "__name__", attr)


def _is_kernel(v) -> bool:
    return type(v).__name__ in ("Kernel", "LegacyKernel", "Simulated")


def kernel_function(obj):
    """The Python function behind a kernel object (@nki.jit Kernel, nki.simulate(...),
    a legacy kernel, or a plain function)."""
    for _ in range(4):
        inner = getattr(obj, "kernel", None)
        if inner is not None and type(obj).__name__ == "Simulated":
            obj = inner
            continue
        fn = getattr(obj, "fn", None)
        if fn is not None and callable(fn):
            obj = fn
            continue
        break
    return obj


def parse_dtype(name: str):
    from .numerics.dtypes import as_dtype
    try:
        return as_dtype(name)
    except TypeError as exc:
        raise CliError(str(exc)) from None


def random_array(dtype, shape, rng):
    """Random host data for a dtype: standard-normal floats, integers in [0, 8), bits
    for packed (x4) types, 0/1 for bool."""
    import numpy as np
    dt = parse_dtype(dtype) if isinstance(dtype, str) else dtype
    shape = tuple(int(s) for s in shape)
    if dt.kind == "float":
        return rng.standard_normal(shape).astype(np.float32).astype(dt.np)
    if dt.kind == "bool":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if dt.kind == "x4":
        return rng.integers(0, np.iinfo(dt.np).max, size=shape, dtype=dt.np,
                            endpoint=True)
    return rng.integers(0, 8, size=shape).astype(dt.np)


def parse_arg(text: str, rng):
    """`NAME=DTYPE[SHAPE]` -> (name, random array, description); `NAME=VALUE` ->
    (name, Python value, description)."""
    if "=" not in text:
        raise CliError(f"--arg {text!r}: write NAME=DTYPE[SHAPE] (e.g. a=bfloat16[128,512]) "
                       "or NAME=VALUE")
    name, _, value = text.partition("=")
    name = name.strip()
    if not name.isidentifier():
        raise CliError(f"--arg {text!r}: {name!r} is not a parameter name")
    m = _SPEC_RE.match(value)
    if m:
        dtype = parse_dtype(m.group(1))
        dims = [d for d in re.split(r"[\s,x]+", m.group(2).strip()) if d]
        shape = tuple(int(d) for d in dims)
        if not shape:
            raise CliError(f"--arg {text!r}: give the shape, e.g. {m.group(1)}[128,512]")
        return name, random_array(dtype, shape, rng), f"{dtype}{list(shape)} random"
    if re.match(r"^\s*[A-Za-z_]\w*\s*\[.*\]\s*$", value):
        raise CliError(f"--arg {text!r}: the shape takes integers, e.g. "
                       f"{value.partition('[')[0].strip()}[128,512]")
    try:
        v = ast.literal_eval(value)
    except (ValueError, SyntaxError):
        v = value
    return name, v, repr(v)


def build_inputs(fn, arg_specs, npz_path, seed, only_known=False) -> tuple[dict, list[str]]:
    """Keyword arguments for the kernel and a description of each."""
    import numpy as np
    rng = np.random.default_rng(seed)
    kwargs, desc = {}, {}
    if npz_path:
        if not os.path.isfile(npz_path):
            raise CliError(f"--inputs {npz_path}: no such file")
        with np.load(npz_path) as data:
            for k in data.files:
                a = data[k]
                kwargs[k] = a.item() if a.ndim == 0 else a
                desc[k] = f"{a.dtype}{list(a.shape)} from {os.path.basename(npz_path)}"
    for text in arg_specs or []:
        name, value, d = parse_arg(text, rng)
        kwargs[name] = value
        desc[name] = d
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        params = {}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    if params and not var_kw:
        unknown = [k for k in kwargs if k not in params]
        if only_known:
            for k in unknown:
                del kwargs[k]
        elif unknown:
            raise CliError(f"{', '.join(unknown)}: not parameters of {fn.__name__}"
                           f"({', '.join(params)})")
    missing = [n for n, p in params.items()
               if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD,
                                                      p.KEYWORD_ONLY) and n not in kwargs]
    if missing:
        example = " ".join(f"--arg {n}=bfloat16[128,512]" for n in missing)
        raise CliError(f"{fn.__name__} needs {', '.join(missing)}: pass {example} "
                       "(or --inputs file.npz)")
    order = [n for n in params if n in kwargs] + [k for k in kwargs if k not in params]
    return {k: kwargs[k] for k in order}, [f"{k} {desc[k]}" for k in order]


# ---------------------------------------------------------------- progress

class Progress:
    """A one-line progress display on stderr for runs longer than `delay` seconds:
    the phase, a bar over the phases, the simulated instruction count and elapsed time.
    Plain text, shown only on a terminal (or when forced)."""

    PHASES = ("simulating", "scheduling", "summarizing", "writing")
    SPIN = "|/-\\"

    def __init__(self, enabled=None, delay=0.5, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.delay = delay
        self.phase = 0
        self.t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread = None
        self._shown = False

    def __enter__(self):
        if self.enabled:
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def set(self, phase: str):
        self.phase = self.PHASES.index(phase)

    def _instructions(self):
        try:
            from .machine import runtime
            active = list(runtime._active)
        except Exception:
            return None
        if active:
            return len(active[-1].program)
        return None

    def line(self, k=0) -> str:
        n = self._instructions()
        if n is not None:
            self.phase, self._seen = 0, n
        elif self.phase == 0 and getattr(self, "_seen", None) is not None:
            self.phase = 1  # the run finished: the timeline is being scheduled
        width = 24
        done = int(width * self.phase / len(self.PHASES))
        bar = "#" * done + self.SPIN[k % 4] + "." * (width - done - 1)
        extra = f"  {n:,} instructions" if n is not None else ""
        text = (f"[{bar}] {self.PHASES[self.phase]:<11}{extra}  "
                f"{time.monotonic() - self.t0:5.1f} s")
        return "\r" + text.ljust(72)  # overwrite a longer previous line

    def _loop(self):
        k = 0
        while not self._stop.wait(0.1):
            if time.monotonic() - self.t0 < self.delay:
                continue
            self.stream.write(self.line(k))
            self.stream.flush()
            self._shown = True
            k += 1

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._shown:
            cols = shutil.get_terminal_size((80, 20)).columns
            self.stream.write("\r" + " " * (cols - 1) + "\r")
            self.stream.flush()
        return False


# ---------------------------------------------------------------- profiles

def run_profile(target, chip, arg_specs, npz, lnc, numerics, seed, progress=None,
                only_known=False, order="compiler"):
    """(Profile, input descriptions) for one kernel target. `only_known`: drop inputs
    that are not parameters of this kernel (compare gives both kernels the same ones)."""
    import trnsim.profile as tprof
    if "@" in target.rpartition("::")[2]:
        target, _, chip = target.rpartition("@")
    chip = _chip(chip)
    obj, fn, _ = load_kernel(target)
    kwargs, desc = build_inputs(fn, arg_specs, npz, seed, only_known)
    if progress:
        progress.set("simulating")
    extra = {} if lnc is None else {"lnc": lnc}
    prof = tprof.profile(obj, chip=chip, numerics=numerics, order=order, **extra, **kwargs)
    if progress:
        progress.set("summarizing")
    prof.summary  # noqa: B018 - computed here, under the progress display
    prof.insights  # noqa: B018
    return prof, desc


def _chip(name):
    """The chip named on the command line (None: the environment's, else trn2); an unknown
    name is a usage error listing the valid ones."""
    from .chips import load_chip
    try:
        return load_chip(name)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


def _table(rows, header=None, align=None, indent="  ") -> str:
    rows = [[str(c) for c in r] for r in rows]
    if header:
        rows = [list(header)] + rows
    if not rows:
        return ""
    n = max(len(r) for r in rows)
    widths = [max(len(r[i]) if i < len(r) else 0 for r in rows) for i in range(n)]
    align = align or ("l",) + ("r",) * (n - 1)
    out = []
    for k, r in enumerate(rows):
        cells = [(c.ljust(w) if a == "l" else c.rjust(w))
                 for c, w, a in zip(r, widths, align)]
        out.append(indent + "  ".join(cells).rstrip())
        if header and k == 0:
            out.append(indent + "  ".join("-" * w for w in widths))
    return "\n".join(out)


_GROUPS = (
    ("Time", ("total_time", "total_active_time", "total_active_time_percent")),
    ("FLOPs", ("mfu_estimated_percent", "hfu_estimated_percent", "model_flops",
               "hardware_flops", "transpose_flops", "mm_arithmetic_intensity",
               "peak_flops_bandwidth_ratio")),
    ("DMA and memory", ("dma_active_time_percent", "dma_transfer_count",
                        "dma_transfer_average_bytes", "mbu_estimated_percent",
                        "hbm_read_bytes", "hbm_write_bytes", "sbuf_read_bytes",
                        "sbuf_write_bytes", "psum_read_bytes", "psum_write_bytes")),
    ("Collectives", ("cc_op_count", "cc_op_time", "cc_op_active_time",
                     "cc_op_active_time_percent")),
)


def format_summary(summary: dict) -> str:
    from .machine.record import ENGINES
    from .profile import views
    used = set()
    parts = []
    for title, keys in _GROUPS:
        rows = [(k, views.fmt_metric(k, summary[k])) for k in keys if k in summary]
        used.update(k for k in keys if k in summary)
        if rows:
            parts.append(f" {title}\n" + _table(rows, align=("l", "r")))
    eng = []
    for e in ENGINES:
        keys = (f"{e}_engine_active_time_percent", f"{e}_engine_active_time",
                f"{e}_engine_instruction_time", f"{e}_engine_instruction_count")
        if any(k in summary for k in keys):
            used.update(keys)
            eng.append((e, *(views.fmt_metric(k, summary.get(k)) for k in keys)))
    if eng:
        parts.append(" Engines\n" + _table(eng, header=("engine", "active", "active time",
                                                        "instruction time", "instructions")))
    rest = [(k, views.fmt_metric(k, v)) for k, v in summary.items() if k not in used]
    if rest:
        parts.append(" Other\n" + _table(rest, align=("l", "r")))
    return "\n\n".join(parts)


def format_insights(insights) -> str:
    from .profile import views
    rows = views.sorted_insights(insights)
    if not rows:
        return "  none fired"
    width = max(60, min(110, shutil.get_terminal_size((100, 20)).columns) - 6)
    out = []
    for k, r in enumerate(rows, 1):
        stake = f" (~{100 * r['share']:.0f}% of the run at stake)" if r["share"] else ""
        out.append(f"  {k}. [{r['criticality']}] {r['title']}{stake}")
        out.append(_wrap(r["message"], width, "       "))
        for ln in r["lines"][:4]:
            code = f"  {ln['text']}" if ln.get("text") else ""
            out.append(f"       at {ln['where']}{code}"[:width + 20])
        if r["advice"]:
            out.append(_wrap("change: " + r["advice"], width, "       "))
    return "\n".join(out)


def _wrap(text, width, indent) -> str:
    import textwrap
    return "\n".join(textwrap.wrap(text, width, initial_indent=indent,
                                   subsequent_indent=indent + "  ")) or indent


def write_outputs(prof, out_dir, trace=True, report=True, extra=None) -> dict:
    from .profile.autosave import save_profile
    from .profile import views
    return save_profile(prof, out_dir, stem=f"{views.kernel_name(prof)}-{views.chip_name(prof.chip)}",
                        trace=trace, report=report, extra=extra)


def write_explorer(prof, directory, fmt) -> str:
    """The profile as Neuron Explorer's tables in `directory` (--explorer)."""
    from .profile.explorer import MissingPyarrow
    try:
        return prof.to_explorer(directory, format=fmt)
    except MissingPyarrow as exc:
        raise CliError(f"--explorer: {exc}") from None


def _header(prof, desc) -> str:
    from .profile import views
    chip = prof.chip
    n = len(prof.program.instructions)
    lnc = int(getattr(prof.program, "lnc", 1) or 1)
    lines = [f"trnsim profile: {views.kernel_name(prof)} on {views.chip_name(chip)} "
             f"({getattr(chip, 'core_name', '')}, LNC={lnc})",
             f"  inputs: {'; '.join(desc) if desc else '(none)'}",
             f"  predicted time {views.fmt_time_ns(prof.total_time * 1e9)} for {n:,} "
             "instructions"]
    return "\n".join(lines)


# ---------------------------------------------------------------- commands

def _cache_counts():
    from .profile.cache import profile_cache
    s = profile_cache().stats()
    return s["hits"], s["misses"]


def _cache_line(before) -> str | None:
    """'profile cache: 3 hits, 1 miss' for the lookups since `before`, None if none."""
    hits, misses = (now - then for now, then in zip(_cache_counts(), before))
    if not hits and not misses:
        return None
    return (f"profile cache: {hits} hit{'' if hits == 1 else 's'}, "
            f"{misses} miss{'' if misses == 1 else 'es'}")


def cmd_profile(args) -> int:
    cache_before = _cache_counts()
    with Progress(enabled=args.progress) as prog:
        prof, desc = run_profile(args.kernel, args.chip, args.arg, args.inputs, args.lnc,
                                 args.numerics, args.seed, prog,
                                 order=args.order or "compiler")
        paths = {}
        if args.out != "" and not args.no_write:
            prog.set("writing")
            paths = write_outputs(prof, args.out, trace=not args.no_trace,
                                  report=not args.no_report, extra={"inputs": desc})
        if args.explorer:
            prog.set("writing")
            paths["explorer"] = write_explorer(prof, args.explorer, args.explorer_format)
    cache_line = _cache_line(cache_before)
    if args.json:
        from .profile.autosave import summary_json
        hits, misses = (now - then for now, then in zip(_cache_counts(), cache_before))
        print(json.dumps({**summary_json(prof, {"inputs": desc}), "files": paths,
                          "profile_cache": {"hits": hits, "misses": misses}}, indent=1))
        return 0
    print(_header(prof, desc))
    if cache_line:
        print(cache_line)
    print()
    print("Summary")
    print(format_summary(dict(prof.summary)))
    print()
    print("Insights")
    print(format_insights(prof.insights))
    if paths:
        print()
        print("Wrote")
        rows = [(k, v) for k, v in (("trace", paths.get("trace")), ("report", paths.get("report")),
                                    ("summary", paths.get("summary")),
                                    ("explorer", paths.get("explorer"))) if v]
        print(_table(rows, align=("l", "l")))
        if paths.get("trace"):
            print("  (open the trace in Perfetto UI or chrome://tracing; the report in a browser)")
    return 0


def _compare_targets(args):
    """[(kernel target, chip, order)] for A and B."""
    chips = args.chip or []
    orders = args.order or []
    if len(orders) > 2:
        raise CliError("at most two --order (one per side)")
    oa = orders[0] if orders else "compiler"
    ob = orders[1] if len(orders) == 2 else oa
    if len(args.kernels) == 1:
        if len(orders) == 2 and len(chips) <= 1:
            chip = chips[0] if chips else None
            return [(args.kernels[0], chip, oa), (args.kernels[0], chip, ob)]
        if len(chips) != 2:
            raise CliError("compare one kernel on two chips (FILE.py::K --chip trn2 --chip "
                           "trn3) or in two orders (--order program --order compiler)")
        return [(args.kernels[0], chips[0], oa), (args.kernels[0], chips[1], ob)]
    if len(args.kernels) != 2:
        raise CliError("compare takes two kernels (A B), or one kernel and two --chip "
                       "or two --order")
    if len(chips) > 2:
        raise CliError("at most two --chip (one per kernel)")
    ca = chips[0] if chips else None
    cb = chips[1] if len(chips) == 2 else ca
    return [(args.kernels[0], ca, oa), (args.kernels[1], cb, ob)]


def cmd_compare(args) -> int:
    from .profile import views
    targets = _compare_targets(args)
    profs, labels = [], []
    with Progress(enabled=args.progress) as prog:
        for target, chip, order in targets:
            # inputs are generated per kernel from the same seed, filtered to its params
            t, c = target, chip
            if "@" in t.rpartition("::")[2]:
                t, _, c = t.rpartition("@")
            name = load_kernel(t)[2]
            prof, _ = run_profile(t, c, args.arg, args.inputs, args.lnc, args.numerics,
                                  args.seed, prog, only_known=True, order=order)
            profs.append(prof)
            labels.append(f"{name}@{views.chip_name(prof.chip)}"
                          + (f" ({order} order)" if args.order else ""))
        paths = []
        if args.out:
            prog.set("writing")
            paths = [write_outputs(p, args.out) for p in profs]
    a, b = profs
    sa, sb = dict(a.summary), dict(b.summary)
    keys = list(sa) + [k for k in sb if k not in sa]
    rows = []
    for k in keys:
        va, vb = sa.get(k), sb.get(k)
        ratio = ""
        if isinstance(va, (int, float)) and isinstance(vb, (int, float)) and va:
            ratio = f"{vb / va:.2f}x"
        elif va == 0 and vb == 0:
            ratio = "="
        rows.append((k, views.fmt_metric(k, va), views.fmt_metric(k, vb), ratio))
    print(f"trnsim compare: A = {labels[0]}, B = {labels[1]}")
    ta, tb = a.total_time, b.total_time
    if ta and tb:
        faster = "B" if tb < ta else "A"
        print(f"  {faster} is {max(ta, tb) / min(ta, tb):.2f}x faster "
              f"({views.fmt_time_ns(ta * 1e9)} vs {views.fmt_time_ns(tb * 1e9)})")
    print()
    print(_table(rows, header=("metric", "A", "B", "B/A")))
    for label, prof in zip(("A", "B"), profs):
        print()
        print(f"Insights {label} ({labels['AB'.index(label)]})")
        print(format_insights(prof.insights))
    if paths:
        print()
        print("Wrote")
        for label, p in zip(("A", "B"), paths):
            print(_table([(label, p.get("report", "")), ("", p.get("trace", ""))],
                         align=("l", "l")))
    return 0


def chip_figures(chip) -> dict:
    """Key figures of a chip, from its data file."""
    c = chip.core
    t = c.tensor
    cores = chip.cores_per_chip
    return {
        "name": chip.name, "neuroncore": chip.core_name, "nc_version": chip.nc_version,
        "cores_per_chip": cores,
        "hbm_bytes": chip.hbm_bytes, "hbm_bandwidth": chip.hbm_bandwidth,
        "hbm_stacks": chip.hbm_stacks, "hbm_stack_bandwidth": chip.hbm_stack_bandwidth,
        "sbuf_bytes_per_core": c.partitions * c.sbuf_bytes_per_partition,
        "sbuf_bytes_per_partition": c.sbuf_bytes_per_partition,
        "psum_bytes_per_core": c.partitions * c.psum_bytes_per_partition,
        "psum_banks": c.psum_banks, "partitions": c.partitions,
        "tensor_clock_hz": t.clock_hz, "vector_clock_hz": c.vector.clock_hz,
        "scalar_clock_hz": c.scalar.clock_hz, "gpsimd_clock_hz": c.gpsimd.clock_hz,
        "pe_array": f"{t.rows}x{t.cols}",
        "peak_bf16_flops_per_core": t.peak_bf16_flops,
        "peak_fp8_flops_per_core": t.peak_fp8_flops,
        "peak_fp32_flops_per_core": t.peak_fp32_flops,
        "peak_mx_flops_per_core": t.peak_mx_flops,
        "peak_bf16_flops_per_chip": t.peak_bf16_flops * cores,
        "dma_engines_per_core": c.dma.engines,
        "dma_bandwidth_per_engine": c.dma.bandwidth_per_engine,
        "dma_bandwidth_per_core": c.dma.aggregate_bandwidth,
        "chip_dma_bandwidth": chip.chip_dma_bandwidth,
        "link_bandwidth": chip.link_bandwidth,
    }


def _bw(x) -> str:
    return f"{x / 1e12:.3g} TB/s" if x >= 1e12 else f"{x / 1e9:.3g} GB/s"


def cmd_chips(args) -> int:
    from .chips import available_chips, load_chip
    def fmt_bytes(b):
        for unit, div in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
            if b >= div:
                return f"{b / div:.4g} {unit}"
        return f"{b} B"
    figs = [chip_figures(load_chip(n)) for n in available_chips()]
    if args.json:
        print(json.dumps(figs, indent=1))
        return 0

    def tf(x):
        return f"{x / 1e12:.1f}" if x else "-"

    def gbs(x):
        return f"{x / 1e9:,.0f} GB/s" if x else "-"

    def ghz(x):
        return f"{x / 1e9:.2f} GHz"
    rows = [
        ("NeuronCore", [f["neuroncore"] for f in figs]),
        ("cores per chip", [f["cores_per_chip"] for f in figs]),
        ("HBM", [f"{fmt_bytes(f['hbm_bytes'])}, {_bw(f['hbm_bandwidth'])}" for f in figs]),
        ("HBM stacks", [f"{f['hbm_stacks']} x {gbs(f['hbm_stack_bandwidth'])}" for f in figs]),
        ("SBUF per core", [f"{fmt_bytes(f['sbuf_bytes_per_core'])} ({f['partitions']} x "
                           f"{fmt_bytes(f['sbuf_bytes_per_partition'])})" for f in figs]),
        ("PSUM per core", [f"{fmt_bytes(f['psum_bytes_per_core'])} ({f['psum_banks']} banks)"
                           for f in figs]),
        ("Tensor Engine", [f"{f['pe_array']} @ {ghz(f['tensor_clock_hz'])}" for f in figs]),
        ("Vector / Scalar / GpSimd", [f"{f['vector_clock_hz'] / 1e9:.2f} / "
                                      f"{f['scalar_clock_hz'] / 1e9:.2f} / "
                                      f"{f['gpsimd_clock_hz'] / 1e9:.2f} GHz" for f in figs]),
        ("peak TFLOPS/core BF16", [tf(f["peak_bf16_flops_per_core"]) for f in figs]),
        ("peak TFLOPS/core FP8", [tf(f["peak_fp8_flops_per_core"]) for f in figs]),
        ("peak TFLOPS/core FP32", [tf(f["peak_fp32_flops_per_core"]) for f in figs]),
        ("peak TFLOPS/core MX", [tf(f["peak_mx_flops_per_core"]) for f in figs]),
        ("peak TFLOPS/chip BF16", [tf(f["peak_bf16_flops_per_chip"]) for f in figs]),
        ("DMA per core", [f"{f['dma_engines_per_core']} engines x "
                          f"{gbs(f['dma_bandwidth_per_engine'])} = {gbs(f['dma_bandwidth_per_core'])}"
                          for f in figs]),
        ("DMA per chip", [gbs(f["chip_dma_bandwidth"]) for f in figs]),
        ("chip-to-chip links", [gbs(f["link_bandwidth"]) for f in figs]),
    ]
    print(_table([(k, *v) for k, v in rows], header=("", *[f["name"] for f in figs]),
                 align=("l",) + ("r",) * len(figs)))
    print("\n  (from the chip data files, src/trnsim/chips/*.json; each figure names its "
          "source there)")
    return 0


# ---------------------------------------------------------------- entry point

def _add_run_options(p):
    p.add_argument("--chip", action="append" if p.prog.endswith("compare") else "store",
                   default=None, help="trn1 | trn2 | trn3 (default: the environment, else trn2)")
    p.add_argument("--arg", action="append", default=[], metavar="NAME=DTYPE[SHAPE]",
                   help="a kernel argument: random data of that dtype and shape, or "
                        "NAME=VALUE for a Python value (repeat per argument)")
    p.add_argument("--inputs", metavar="FILE.npz", help="arrays by parameter name")
    p.add_argument("--lnc", type=int, choices=(1, 2), default=None,
                   help="logical NeuronCore count (current-API kernels)")
    p.add_argument("--numerics", action=argparse.BooleanOptionalAction, default=True,
                   help="compute values (default) or timing only (--no-numerics: faster)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs")
    p.add_argument("--order", action="append" if p.prog.endswith("compare") else "store",
                   choices=("compiler", "program"), default=None,
                   help="engines run the compiler model's issue order (default) or the "
                        "kernel's program order (in-order mode)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress line on stderr (default: when stderr is a terminal)")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="trnsim", description="trnsim: run NKI kernels on a simulated Trainium and "
        "predict their latency, as Neuron Explorer would show it.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("profile", help="profile one kernel: summary, insights, trace, report",
                       description="Profile one kernel on the simulated chip.")
    p.add_argument("kernel", metavar="FILE.py::KERNEL")
    _add_run_options(p)
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"where the trace, report and summary go (default ./{DEFAULT_OUT}/)")
    p.add_argument("--no-write", action="store_true", help="write no files")
    p.add_argument("--no-trace", action="store_true", help="skip the Perfetto trace")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--explorer", default=None, metavar="DIR",
                   help="also write the profile as Neuron Explorer's tables into DIR "
                        "(Instruction, DmaPacket, Summary, ...; written even with --no-write)")
    p.add_argument("--explorer-format", choices=("parquet", "json"), default="parquet",
                   help="<Table>.parquet (default; needs pyarrow: pip install "
                        "'trnsim[explorer]') or <Table>.json")
    p.set_defaults(func=cmd_profile)
    c = sub.add_parser("compare", help="two profiles side by side (two kernels, or one "
                       "kernel on two chips)",
                       description="Compare two kernels, or one kernel on two chips "
                       "(FILE.py::K --chip trn2 --chip trn3, or FILE.py::K@trn2 FILE.py::K@trn3).")
    c.add_argument("kernels", nargs="+", metavar="FILE.py::KERNEL[@CHIP]")
    _add_run_options(c)
    c.add_argument("--out", default=None, metavar="DIR",
                   help="also write both traces and reports there")
    c.set_defaults(func=cmd_compare)
    h = sub.add_parser("chips", help="the chips and their key figures")
    h.add_argument("--json", action="store_true")
    h.set_defaults(func=cmd_chips)
    return ap


def main(argv=None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if not getattr(args, "command", None):
        ap.print_help()
        return 2
    try:
        return args.func(args) or 0
    except CliError as exc:
        print(f"trnsim {args.command}: {exc}", file=sys.stderr)
        return 2
    except NkiValidationError as exc:  # the kernel's own error, at its line: no traceback
        print(f"trnsim {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. piped into head
        return 0


if __name__ == "__main__":
    sys.exit(main())
