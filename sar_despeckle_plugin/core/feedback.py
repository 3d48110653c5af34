"""How the core reports to its caller: progress, cancellation, messages.

The Processing layer fills one from QgsProcessingFeedback; scripts and tests use the defaults.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Callable


def _print_warning(message: str) -> None:
    print(f"Warning: {message}", file=sys.stderr)


@dataclass
class Feedback:
    """Callbacks the core calls; every one is optional.

    Attributes:
        progress: receives the fraction done, in [0, 1].
        is_cancelled: polled between units of work; True stops the run (nothing is written).
        info: informative messages (estimated looks, chosen device, ...).
        warn: things the user should know (a fallback was taken, a guess was made).
    """

    progress: Callable[[float], None] = field(default=lambda fraction: None)
    is_cancelled: Callable[[], bool] = field(default=lambda: False)
    info: Callable[[str], None] = field(default=lambda message: None)
    warn: Callable[[str], None] = field(default=_print_warning)
