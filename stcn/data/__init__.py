"""Data, split by job (read top-down):

- `folders`, `images`: the DAVIS / YouTube-VOS folder layouts and the mask/frame readers everything shares;
- `fetch/`: getting datasets: `sources` (the download registry: each dataset's files, URLs, checksums, and its
  bundled stand-in built from the real DAVIS sample), `download` (resumable, checked), `archives` (unpacking);
- `shards/`: WebDataset shards: `build` (the entry points per layout, `shard_generic` for your own folders),
  `inputs` (samples and their checks), `writer`, `store` (local / S3), `format`, `bl30k` (straight from tars);
- `stream/`: training streams: `loader` (shards -> batches, DDP-aware), `samples` (frame choice, objects),
  `augment` and `tps` (the recipe's augmentations);
- `commands`: `stcn download` and `stcn shard ...`.

Dependencies point one way: stream -> shards -> folders/images; fetch -> shards.store (S3 options only); no
cycles (tests/test_layout.py).
"""
