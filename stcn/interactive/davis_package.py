"""Importing the `davisinteractive` package (1.0.4, 2020) on today's NumPy 2 / networkx 3.

The package uses names that NumPy and networkx have since removed; each was a plain alias, so they
are restored as the same objects before the import: `np.int` = `int`, `np.float` = `float`,
`np.object` = `object` (removed in NumPy 1.24), `np.trapz` = `np.trapezoid` (renamed in NumPy 2)
and `networkx.from_scipy_sparse_matrix` = `networkx.from_scipy_sparse_array` (renamed in networkx 3).
Its report summary relied on pandas < 2 silently dropping non-numeric columns in `groupby().mean()`;
`EvaluationService.summarize_report` is wrapped to drop the one text column (`session_id`) and give
the numeric columns a numeric dtype first, which is what pandas < 2 did. Nothing else is changed.
Install: `bash install.sh` (docs/setup.md, docs/interactive.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from types import ModuleType

from stcn.errors import UserError

_ALIASES = {"int": int, "float": float, "object": object}


def _restore_aliases() -> None:
    import networkx as nx
    import numpy as np

    for name, value in _ALIASES.items():
        if name not in np.__dict__:
            setattr(np, name, value)
    if not hasattr(np, "trapz"):
        np.trapz = np.trapezoid
    if not hasattr(nx, "from_scipy_sparse_matrix"):
        nx.from_scipy_sparse_matrix = nx.from_scipy_sparse_array


def _numeric_report(summarize):
    """`summarize_report` on a report whose text column is dropped and numbers are numbers (pandas < 2)."""

    def wrapped(self, df):
        import pandas as pd

        df = df.drop(columns=["session_id"], errors="ignore")
        numeric = [c for c in df.columns if c != "sequence"]
        df[numeric] = df[numeric].apply(pd.to_numeric)
        return summarize(self, df)

    wrapped.stcn_numeric_report = True
    return wrapped


def davisinteractive() -> ModuleType:
    """The `davisinteractive` package with its session, robot, scribble and dataset modules imported."""
    _restore_aliases()
    try:
        import davisinteractive as dvi
        import davisinteractive.dataset
        import davisinteractive.evaluation
        import davisinteractive.robot
        import davisinteractive.session
        import davisinteractive.utils.scribbles  # noqa: F401
    except ImportError as e:
        raise UserError(
            f"the DAVIS interactive evaluation needs the `davisinteractive` package ({e}); "
            "install it as docs/interactive.md says (bash install.sh does)"
        ) from None
    service = dvi.evaluation.EvaluationService
    if not getattr(service.summarize_report, "stcn_numeric_report", False):
        service.summarize_report = _numeric_report(service.summarize_report)
    return dvi


@contextmanager
def registered_sequences(entries: dict[str, dict]):
    """Make the package's DAVIS registry describe `entries` (name -> num_frames, image_size, ...) as `val`.

    The package's local session only evaluates sequences of its built-in DAVIS-2017 list (`Davis.dataset`,
    `Davis.sets`); this swaps in the sequences actually on disk (the bundled sample, a smaller
    resolution) for the duration of the block and puts the built-in list back afterwards.
    """
    davis = davisinteractive().dataset.Davis
    saved_sets, saved = dict(davis.sets), {n: davis.dataset.get(n) for n in entries}
    try:
        davis.dataset.update(entries)
        davis.sets["val"] = list(entries)
        yield davis
    finally:
        davis.sets.clear()
        davis.sets.update(saved_sets)
        for name, old in saved.items():
            if old is None:
                davis.dataset.pop(name, None)
            else:
                davis.dataset[name] = old
