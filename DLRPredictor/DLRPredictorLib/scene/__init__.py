"""The only MRML users: nodes, tables, heatmap overlay, scene files.

- ``adapter``: a plain-Python MRML scene from slicer-core that behaves like the application's;
- ``geometry``: IJKToRAS <-> LPS spacing, origin and direction;
- ``volumes``: volume nodes <-> ImageVolume, get-or-create a node by class and name;
- ``segmentations``: lesion masks <-> segmentation and labelmap nodes;
- ``tables``: features and key-value tables, provenance attributes;
- ``heatmap``: the Grad-CAM volume and its foreground overlay;
- ``guard``: SceneGuard, which removes the nodes of a failed write;
- ``files``: .mrb / .mrml scene files;
- ``case_scene``: one case's prediction into a scene (tables, heatmap, .mrb of a case);
- ``scene_io``: a face re-exporting the public functions above (the earlier module path).
"""
