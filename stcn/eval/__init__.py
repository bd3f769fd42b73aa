"""Evaluation: the official DAVIS J/F scorer (vectorised) and the `stcn score` command."""
