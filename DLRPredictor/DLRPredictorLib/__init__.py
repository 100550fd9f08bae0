"""DLRPredictorLib: the plain-Python engine of the DLRPredictor 3D Slicer extension.

Everything here runs without Qt. MRML (``slicer``) is imported only by the scene layer
(``scene_adapter``, ``scene_io``) and torch only by the deep-feature layer, both lazily, so that
importing this package is fast.
"""

__version__ = "0.1.0"
