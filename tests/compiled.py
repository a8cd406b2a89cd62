"""A module's forward pass compiled whole, for the tests that only need its outputs.

Run eagerly, every operation of a forward is an XLA compile of its own (a Mamba-2
forward has hundreds); compiled whole it is one program per module type and input
shapes, shared by every test file in the worker.
"""

from flax import nnx

# ``forward(module, *inputs) == module(*inputs)``.
forward = nnx.jit(lambda module, *inputs: module(*inputs))
