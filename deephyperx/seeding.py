"""One place for randomness: Python, NumPy and torch seeded together, and per-epoch seeds
derived from the run seed so that a resumed run draws exactly what an uninterrupted one would."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def derived_seed(seed: int, *keys: int) -> int:
    """A seed for a sub-stream (e.g. one epoch) that depends only on ``seed`` and ``keys``."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1, dtype=np.uint64)[0] % 2**63)


def torch_generator(seed: int, *keys: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator for the sub-stream ``(seed, *keys)``."""
    gen = torch.Generator(device=device)
    gen.manual_seed(derived_seed(seed, *keys))
    return gen


def rng_states() -> dict:
    """The global generators' states, in types that ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    return {
        "python": repr(random.getstate()),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2])},
        "torch": torch.get_rng_state(),
    }


def restore_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` captured."""
    import ast

    random.setstate(ast.literal_eval(states["python"]))
    keys = states["numpy"]["keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, states["numpy"]["pos"], 0, 0.0))
    torch.set_rng_state(states["torch"])
