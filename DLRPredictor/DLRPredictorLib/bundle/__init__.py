"""Model bundles: the manifest, verification and writing."""
