"""Layer stacks (ordered, named, straight-alpha layers), compositing, alpha tools and PSD/PNG encoding.

Plain torch/numpy/PIL/psd-tools: nothing here imports ComfyUI, so it is usable and testable on its own.
The stack convention is documented once, in stack.py.
"""

from .stack import Layer, LayerStack, make_layer
from .text2layer import text2layer_stack

__all__ = ["Layer", "LayerStack", "make_layer", "text2layer_stack"]
