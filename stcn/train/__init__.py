"""Training stages 0-3 of the STCN recipe: streamed from shards, DDP via torchrun, resumable, logged."""
