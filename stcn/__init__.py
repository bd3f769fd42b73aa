"""STCN: Space-Time Correspondence Networks for semi-supervised video object segmentation."""

__version__ = "0.1.0"
