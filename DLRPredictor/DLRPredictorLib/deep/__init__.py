"""Deep features: network definitions, the numpy inference engine, Grad-CAM heatmaps."""
