"""The one error type of the batch runner.

The runner is a client of the ComfyUI HTTP API and imports nothing of the pack (it runs without torch), so it has its
own error class; messages follow the pack's rule: name the file/node/input, what was expected and what came.
"""


class BatchError(ValueError):
    """Bad input to the batch runner (workflow file, override, prompt list) or an unusable server answer."""
