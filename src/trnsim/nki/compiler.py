"""`nki.compiler`: present so that `import nki.compiler` works under the simulator.

The current NKI documents no public contents for it usable in a simulation (the
language guide mentions `nki.compiler.kernel_builder.compile_kernel`, a hardware
compilation entry point, and the legacy `neuronxcc.nki.compiler` allocation API is
not part of the current NKI), so nothing is defined here; an attribute lookup raises
an AttributeError that says so."""

__all__: list[str] = []


def __getattr__(name):
    raise AttributeError(f"nki.compiler.{name} is not available under trnsim: there is no "
                         "compiler here; kernels run directly on the simulated NeuronCore")
