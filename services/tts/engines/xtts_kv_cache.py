"""A static key/value cache for XTTS's GPT, one row (slot) per stream being decoded.

Every layer's keys and values live in two preallocated tensors of shape
``[layers, slots, heads, max_len, head_dim]``: nothing grows or moves while streams come
and go, so one batched decoding step reads each active row at its own length. A stream
takes the lowest free slot when it joins and gives it back when it leaves; taking the
lowest keeps the active rows packed at the front, so a step runs on the view
``[:top]`` (``top`` one past the highest slot in use) with no gather. What a free slot
holds is never read: a row's attention mask covers only positions that row has written.
"""

from __future__ import annotations

import torch


class StaticKvCache:
    """Keys and values for ``slots`` rows of up to ``max_len`` positions each."""

    def __init__(
        self,
        *,
        layers: int,
        slots: int,
        heads: int,
        head_dim: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, not {slots}")
        shape = (layers, slots, heads, max_len, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.max_len = max_len
        self.slots = slots
        # Positions written per slot (0 for a free one).
        self.lengths = [0] * slots
        self._free = set(range(slots))

    @property
    def free(self) -> int:
        """Slots no stream holds."""
        return len(self._free)

    @property
    def top(self) -> int:
        """One past the highest slot in use (0 when none is)."""
        used = [slot for slot in range(self.slots) if slot not in self._free]
        return max(used) + 1 if used else 0

    def take(self) -> int:
        """The lowest free slot, now held (emptied); IndexError when none is free."""
        if not self._free:
            raise IndexError("every KV-cache slot is in use")
        slot = min(self._free)
        self._free.remove(slot)
        self.lengths[slot] = 0
        return slot

    def release(self, slot: int) -> None:
        """Give ``slot`` back (a slot already free is left as it is)."""
        self.lengths[slot] = 0
        self._free.add(slot)

    def advance(self, top: int) -> None:
        """Count the position a step wrote in every held slot of ``[:top]`` (a free one
        stays empty: what a step wrote there is never read)."""
        for slot in range(top):
            if slot not in self._free:
                self.lengths[slot] += 1

    def write_prompt(self, layer: int, slot: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Store a prompt's keys and values (``[heads, length, head_dim]``) at the start of
        ``slot``."""
        length = keys.shape[1]
        if length > self.max_len:
            raise ValueError(f"prompt of {length} positions exceeds the cache's {self.max_len}")
        self.keys[layer, slot, :, :length] = keys
        self.values[layer, slot, :, :length] = values

    def write_step(
        self,
        layer: int,
        top: int,
        positions: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
    ) -> None:
        """Store one position per row of ``[:top]``: row ``i``'s keys and values
        (``[top, heads, head_dim]``) at ``positions[i]``."""
        rows = torch.arange(top, device=positions.device)
        # Two index tensors around a slice: the selection is [top, heads, head_dim].
        self.keys[layer][rows, :, positions] = keys.to(self.keys.dtype)
        self.values[layer][rows, :, positions] = values.to(self.values.dtype)
