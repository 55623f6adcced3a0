"""The most tensor memory a piece of PyTorch work holds at once: its working set, free of what the C
library's allocator keeps around it (which the process's resident size also counts)."""
from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class TensorPeak(TorchDispatchMode):
    """The largest total size of the tensors alive at once (storages created by the operators run under
    it, each counted until it is freed): a training step's working set, free of what the C library's
    allocator keeps around it."""

    def __init__(self):
        super().__init__()
        self.live, self.peak, self.storages = 0, 0, set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                storage = value.untyped_storage()
                key, size = storage.data_ptr(), storage.nbytes()
                if size and key not in self.storages:
                    self.storages.add(key)
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._freed, key, size)
        return out

    def _freed(self, key: int, size: int) -> None:
        self.live -= size
        self.storages.discard(key)
