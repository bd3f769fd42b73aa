"""The STCN network (official checkpoint layout), its memory read-out and checkpoint loading."""

from stcn.model.checkpoint import load_weights, official_state_dict
from stcn.model.network import STCN

__all__ = ["STCN", "load_weights", "official_state_dict"]
