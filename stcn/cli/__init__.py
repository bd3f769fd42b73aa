"""The `stcn` command line: one sub-command per task, each defined next to the code it drives.

The package: `app` assembles the `stcn` app from each area's `commands` module (`stcn.cli.app.AREAS`, loaded by
name when the app runs); `options` holds the options several areas share; `first_mask` is `stcn segment`'s
strokes -> first mask. This `__init__` imports nothing, so a command module importing `stcn.cli.options` does not
depend on every area. The error handler of every entry point is `stcn.errors.reporting`."""
