"""The VGGT network (own re-implementation of facebookresearch/vggt) and its checkpoint loader."""
from .config import VGGTConfig
from .loading import CheckpointError, load_vggt
from .vggt import VGGT

__all__ = ["VGGTConfig", "VGGT", "load_vggt", "CheckpointError"]
