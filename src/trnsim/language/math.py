"""The tile functions of nki.language (elementwise, activations, reductions, softmax,
rms_norm, dropout, matmul, transpose, where, broadcast_to, expand_dims, and the op
constants), below both front ends: trnsim.nki.language exports them, the legacy front
end (trnsim/legacy/compute.py) runs its calls through their destination-passing forms.

Each function allocates its result (SBUF, or PSUM for `matmul`/`transpose`) and is
built only from `trnsim.isa` instructions, so semantics live in one place and every
step appears in the record. The same functions are the operator identities kernels
pass as `op=` to ISA instructions (`op=nl.add`, `op=nl.exp`): the ISA resolves them by
`__name__`, so each function keeps its nl name.

Every composition exists once, destination-passing (`binary_into`, `unary_into`,
`reduce_into`, `softmax_into`, `rms_norm_into`, `where_into`, `broadcast_into`,
`transpose_into`, `matmul_into`, `dropout_into`): a public function checks its operands,
decides its result's shape, dtype and buffer, and runs the composition into it; the
legacy front end (trnsim/legacy/compute.py) runs its calls through the same forms.

Modules (numerics choices are listed in docs/numerics.md):
- tensors.py: new tensors, HBM fills, tile-size constants;
- checks.py: operand rules shared with the legacy API (tile checks, dtype promotion,
  scalar dtypes, reduction axes and shapes);
- tiles.py: results, intermediates, broadcast views, moves into SBUF;
- binary.py, unary.py: elementwise functions; reductions.py: reductions, softmax,
  rms_norm; layout.py: where, expand_dims, broadcast_to, transpose, matmul;
  dropout.py: dropout, random_seed.
"""
from __future__ import annotations

from .binary import *  # noqa: F401,F403
from .binary import __all__ as _binary_names
from .dropout import *  # noqa: F401,F403
from .dropout import __all__ as _dropout_names
from .layout import *  # noqa: F401,F403
from .layout import __all__ as _layout_names
from .reductions import *  # noqa: F401,F403
from .reductions import __all__ as _reduction_names
from .unary import *  # noqa: F401,F403
from .unary import __all__ as _unary_names

# The destination-passing forms: not in the nl API, used by trnsim/legacy/compute.py.
from .binary import binary_into  # noqa: F401
from .dropout import dropout_into  # noqa: F401
from .layout import broadcast_into, matmul_into, transpose_into, where_into  # noqa: F401
from .reductions import reduce_into, rms_norm_into, softmax_into  # noqa: F401
from .unary import unary_into  # noqa: F401


class _NamedOp:
    """An operator constant (`nl.bypass`, `nl.prelu`, `nl.average`): no callable
    semantics of its own, resolved by name by the ISA."""

    def __init__(self, name: str, doc: str):
        self.__name__ = name
        self.name = name
        self.__doc__ = doc

    def __repr__(self) -> str:
        return f"nl.{self.__name__}"


bypass = _NamedOp("bypass", "No-op operator that passes data through unchanged (op0/op1 of "
                            "tensor-scalar instructions, activate2).")
prelu = _NamedOp("prelu", "Parametric ReLU activation (op of activation/activate2; slope "
                          "from relu_param).")
average = _NamedOp("average", "Average reduction operator (op of tensor_partition_reduce).")

__all__ = (["bypass", "prelu", "average"] + _binary_names + _unary_names + _reduction_names
           + _dropout_names + _layout_names)
