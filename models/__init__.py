"""Official LayerDiffuse files: the registry (`registry.py`), file access (`files.py`) and how each kind patches a model."""
