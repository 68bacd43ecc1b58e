"""Device-to-host copies of a batch's outputs that the device does not wait for: on a GPU, into pinned host
memory, non-blocking, on a stream of their own; on a CPU the tensors themselves (nothing to copy)."""

from __future__ import annotations

import numpy as np
import torch


class HostCopy:
    """A batch's outputs on their way to the host. `arrays()` waits for the copy (on the caller's thread: the
    writer's) and returns them as NumPy arrays."""

    def __init__(self, tensors: list[torch.Tensor], done: torch.cuda.Event | None) -> None:
        self.tensors, self.done = tensors, done

    def arrays(self) -> list[np.ndarray]:
        if self.done is not None:
            self.done.synchronize()
        return [tensor.numpy() for tensor in self.tensors]


class HostCopier:
    """Starts the copies of each batch's outputs from `device` to the host, and returns at once.

    On a GPU each tensor is copied into a fresh pinned host tensor on a copy stream that first waits for the
    compute stream's work so far; the source tensors are marked as used on the copy stream, so that the caching
    allocator does not hand their memory to the next batch before the copy ends. Fresh pinned tensors come from
    torch's caching host allocator (reused once freed), and live as long as anything (an Arrow table waiting
    for its row group) views them: no buffer is overwritten while read."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def start(self, *tensors: torch.Tensor) -> HostCopy:
        if self.stream is None:
            return HostCopy([tensor.cpu() for tensor in tensors], None)
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            host = [torch.empty(tensor.shape, dtype=tensor.dtype, pin_memory=True) for tensor in tensors]
            for source, target in zip(tensors, host):
                target.copy_(source, non_blocking=True)
                source.record_stream(self.stream)
            done = torch.cuda.Event()
            done.record(self.stream)
        return HostCopy(host, done)
