"""Data: DAVIS / YouTube-VOS folder readers and writers, downloads, WebDataset shards, training streams."""
