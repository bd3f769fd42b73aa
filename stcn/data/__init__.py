"""Data, split by job (read top-down):

- `folders`, `images`: the DAVIS / YouTube-VOS folder layouts and the mask/frame readers everything shares;
- `fetch/`: getting datasets (which files, from `stcn.registry`): `sources` (each file's URL per source, and the
  bundled stand-in of each layout, `STAND_INS` by `stcn.layouts` class, built from the real DAVIS sample),
  `download` (resumable, checked), `archives` (unpacking);
- `shards/`: WebDataset shards: `build` (the entry points per layout, `READERS` by `stcn.layouts` class;
  `shard_generic` for your own folders), `inputs` (samples and their checks), `writer`, `store` (local / S3),
  `format`, `bl30k` (straight from tars);
- `stream/`: training streams: `loader` (shards -> batches, DDP-aware), `samples` (frame choice, objects),
  `augment` and `tps` (the recipe's augmentations);
- `commands`: `stcn download` and `stcn shard ...` (`stcn shard dataset NAME`: a registry dataset by its layout).

Dependencies point one way: stream -> shards -> folders/images; fetch -> shards.store (S3 options only); no
cycles (tests/test_layout.py).
"""
