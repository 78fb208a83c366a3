"""Online learners with delayed labels and verified snapshots."""

from __future__ import annotations

from forex_diffusion.online import learners
from forex_diffusion.online.learners import *  # noqa: F403 - the names learners.__all__ lists
from forex_diffusion.online.snapshot import SNAPSHOT_MAGIC, dump_state, load_state

__all__ = ["SNAPSHOT_MAGIC", *learners.__all__, "dump_state", "load_state"]
