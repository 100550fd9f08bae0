"""Deep features: network definitions, the numpy inference engine, weights files, Grad-CAM heatmaps.

- resnet: the ResNet in torch (torchvision's layout, without torchvision), for training.
- resnet_numpy: the same network's forward pass in numpy (inference never imports torch).
- deep_model: ARCHITECTURES, build_resnet, DeepModel (features, probabilities, Grad-CAM).
- weights: safetensors writing (save_safetensors) and checked loading into torch (load_weights).
- heatmap: Grad-CAM maps onto the crop, the slice and the volume (heatmap_to_slice, heatmap_volume).
"""
