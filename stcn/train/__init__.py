"""Training stages 0-3 of the STCN recipe: streamed from shards, DDP via torchrun, resumable, logged.

CLI: `stcn train ...` or `torchrun --nproc-per-node N -m stcn.train ...` (see `commands`).
API: `trainer.train(TrainConfig(...))` (`config.TrainConfig`: defaults and checks); the recipe table is
`recipe.STAGES` (also each stage's stream data kind); `trainer.train_one_iteration` is one step; the forward
pass is `forward.TrainingForward`, its loss `loss.compute_losses`. Submodules are not imported
here so that `stcn --help` stays fast.
"""
