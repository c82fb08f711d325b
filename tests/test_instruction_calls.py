"""The nki.isa calls (trnsim/isa/__init__.py `_returning_handle`), made with each
instruction's own parameters: they hand the instruction exactly the arguments that
binding the call to its documented signature gives, however the kernel passes them."""
from __future__ import annotations

import inspect

import pytest

import trnsim.isa as isa
from trnsim.isa import _returning_handle
from trnsim.machine.errors import kernel_location

INSTRUCTIONS = sorted(name for name, fn in vars(isa.without_handles).items()
                      if hasattr(fn, "__wrapped__"))


def _spy(name):
    """A stand-in for instruction `name` (its signature) that returns the arguments
    it was given, with the kernel location seen from inside it."""
    sig = inspect.signature(getattr(isa, name))

    def spy(*args, **kwargs):
        return args, kwargs, kernel_location(2)
    spy.__signature__ = sig
    spy.__name__ = spy.__qualname__ = name
    return spy, sig


def _calls(sig):
    """Ways to call: every parameter by keyword, every one by position, only the
    required ones by keyword (each value a distinct object)."""
    values = {p: object() for p in sig.parameters}
    required = [p.name for p in sig.parameters.values() if p.default is p.empty]
    return [((), dict(values)), (tuple(values.values()), {}),
            ((), {p: values[p] for p in required})]


@pytest.mark.parametrize("name", INSTRUCTIONS)
def test_the_call_forwards_what_the_signature_binds(name):
    spy, sig = _spy(name)
    call, call_without_handle = _returning_handle(spy)
    assert inspect.signature(call) == inspect.signature(call_without_handle) == sig
    for args, kwargs in _calls(sig):
        bound = sig.bind(*args, **kwargs)
        bound.apply_defaults()
        for fn in (call, call_without_handle):  # (no kernel runs: no handle)
            got_args, got_kwargs, where = fn(*args, **kwargs)
            assert got_args == tuple(bound.arguments.values()) and got_kwargs == {}
            # the calls are trnsim's machinery: the location is this test's line
            assert where is not None and where.file == __file__


@pytest.mark.parametrize("name", ["nc_matmul", "tensor_copy", "activation"])
def test_a_wrong_call_raises_what_the_instruction_does(name):
    call, _ = _returning_handle(_spy(name)[0])
    real = getattr(isa.without_handles, name).__wrapped__

    def message(fn, **kwargs):
        with pytest.raises(TypeError) as e:
            fn(**kwargs)
        return str(e.value)

    for kwargs in ({}, {"not_a_parameter": 1}):
        assert message(call, **kwargs) == message(real, **kwargs)
