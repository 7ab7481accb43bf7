"""The pack (and with it ComfyUI) must be importable before this tier's modules import `layerstack.*`."""

from fixtures.comfy_env import import_pack

import_pack()
