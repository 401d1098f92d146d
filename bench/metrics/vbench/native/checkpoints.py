"""Loading a foreign checkpoint into one of our modules, strictly (nanoGPT's `from_pretrained` spirit)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def load_exactly(model: nn.Module, state: dict[str, torch.Tensor], path: str | Path, what: str) -> nn.Module:
    """`model` with `state`'s tensors, in eval mode; a ValueError naming the file when a tensor is missing, extra
    or of another shape ("<path>: not <what>: ..."). A model built on the meta device takes the tensors as they are
    (no initialisation that the checkpoint would replace)."""
    own = model.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]})" if wrong else ""]
        raise ValueError(f"{path}: not {what}: {', '.join(p for p in parts if p)} tensors")
    on_meta = any(t.is_meta for t in own.values())
    tensors = {k: (v.float() if v.is_floating_point() else v).contiguous() for k, v in state.items()}
    model.load_state_dict(tensors, strict=True, assign=on_meta)
    return model.eval()
