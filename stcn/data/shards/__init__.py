"""WebDataset shards: on-disk format, storage (local or S3), writer, and the per-dataset inputs."""
