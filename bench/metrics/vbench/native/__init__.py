"""VBench's dimensions computed natively (in this project's environment), reproducing the official numbers.

- `frames`: VBench's frame sampling and resize / crop / normalise transforms, batched.
- `vit`: DINO ViT-B/16 and OpenAI CLIP's image towers, with loaders for the files VBench reads.
- `viclip`: ViCLIP's video and text towers and CLIP's byte-pair tokeniser.
- `raft`: RAFT (large), the optical flow of dynamic degree.
- `amt`: AMT-S, the frame interpolation of motion smoothness.
- `musiq`: MUSIQ, the image-quality transformer of imaging quality.
- `scorers`: one scorer per dimension (`NATIVE_SCORERS`), VBench's formulas.
- `backend`: the "native" scoring backend (`arlon-bench score RUN --backend native`).

Which backend to use: docs/vbench-notes.md, 'Native and official backends'.
"""

from __future__ import annotations

from bench.metrics.vbench.native import backend
from bench.metrics.vbench.native.backend import BACKEND, VERSION, NativeVBenchBackend
from bench.metrics.vbench.native.scorers import NATIVE_SCORERS

__all__ = ["BACKEND", "NATIVE_SCORERS", "NativeVBenchBackend", "VERSION", "backend"]
