"""The one exception type the pack raises for bad input or bad files.

ComfyUI shows an exception's message in the UI and in the /prompt error response, so every message names the node
(or file), the input, what was expected and what came.
"""


class LayerStackError(ValueError):
    """Bad input to a LayerStack node, or a layer file that does not match what it should be."""


def node_error(node: str, input_name: str, expected: str, got: str) -> LayerStackError:
    return LayerStackError(f"{node}: input '{input_name}' expected {expected}, got {got}.")
