"""Training streams: shards -> decoded, augmented training samples -> batches."""
