"""Progress within a network's forward pass: each convolution, as it runs, reports the share of
the work done, so a long tile moves the progress bar instead of leaving it still."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from torch import nn


@contextlib.contextmanager
def layer_progress(module: nn.Module, report: Callable[[float], None], passes: int = 1) -> Iterator[None]:
    """While in the block, every forward call of a (transposed) convolution of ``module`` calls
    ``report`` with the share of ``passes`` forward passes done (convolutions counted, not
    weighted by cost); exceptions raised by ``report`` (a cancel) stop the pass."""
    layers = [m for m in module.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    total = max(1, len(layers) * passes)
    done = 0

    def hook(*_) -> None:
        nonlocal done
        done += 1
        report(min(done / total, 1.0))

    handles = [layer.register_forward_hook(hook) for layer in layers]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
