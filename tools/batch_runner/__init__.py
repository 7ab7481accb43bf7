"""layerstack-batch: runs ComfyUI workflows as batches over the HTTP API (no torch, no ComfyUI import).

Modules: ``cli`` (command line), ``workflow`` (reading files), ``convert`` (UI → API format, one entry:
``ui_to_api``), ``jobs`` (overrides and the lazy batch), ``client`` (one server: HTTP + websocket), ``runner``
(workers, downloads), ``manifest``, ``progress``.
"""
