"""CrossFuse (H. Li, X.-J. Wu, "CrossFuse: A novel cross attention mechanism based infrared and visible image
fusion approach", Information Fusion 103 (2024) 102147), after the official release ``hli1221/CrossFuse``.

Importing this package registers the method ``crossfuse``. Modules: :mod:`.network` (auto-encoders, CAM,
fusion decoder, official state-dict layout), :mod:`.losses` (the release's training losses), :mod:`.method`
(the registered method and its two-stage trainer). Documentation: docs/methods/crossfuse.md.
"""

from .method import OFFICIAL_FILES, CrossFuse, CrossFuseTrainer, official_paths

__all__ = ["OFFICIAL_FILES", "CrossFuse", "CrossFuseTrainer", "official_paths"]
