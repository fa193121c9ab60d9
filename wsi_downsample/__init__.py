"""wsi_downsample: learned non-uniform downsampling for whole-slide image segmentation."""

__version__ = "0.1.0"
