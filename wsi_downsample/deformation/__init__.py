"""wsi-seg."""
