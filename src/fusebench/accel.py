"""Optional performance settings for the networks of learned methods (docs/performance.md).

* ``precision``: ``fp32`` (default) or ``bf16``: the networks run under ``torch.autocast`` with bfloat16 on the
  method's device (CPU autocast supports bf16 too). In fusion only the network calls are autocast and their
  outputs come back as float32, so a method's test-time post-processing (normalisation, clipping, rounding)
  runs in float32 as before; in training the trainer's step (forward and loss) runs under autocast (bf16 has
  float32's range: no GradScaler).
* ``channels_last``: network weights and 4-D network inputs in ``torch.channels_last`` memory format (faster
  convolutions on GPUs with tensor cores); values change only by float rounding.
* ``compile``: ``torch.compile`` of the networks. The first call for each new input shape pays the compilation
  (seconds to minutes); on CPU it needs a C++ compiler, on CUDA Triton. When compilation does not work here,
  the command fails with a message saying so instead of running uncompiled.

The defaults change nothing: a network set up with ``Accel()`` is the network as it was, bit for bit.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16")

N = TypeVar("N", bound=nn.Module)


@dataclass(frozen=True)
class Accel:
    """The performance settings of one fuse or train run (config: ``training.accel`` / ``fusion``; CLI:
    ``--precision``, ``--channels-last``, ``--compile``)."""

    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def is_default(self) -> bool:
        return self == Accel()

    def record(self) -> dict[str, Any]:
        """The settings as JSON values, for ``fusion.json`` and ``recipe.json``."""
        return asdict(self)

    def autocast(self, device: str | torch.device) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on ``device``'s type when ``precision`` is bf16, else a no-op."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` in channels_last memory format when that is asked for and ``x`` is 4-D, else ``x``."""
        if self.channels_last and x.ndim == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def network(self, net: N, device: str | torch.device, entries: Iterable[str] = ("forward",)) -> N:
        """Set up ``net`` (already on ``device``) for inference, in place: channels_last weights, and each of its
        methods or submodules named in ``entries`` (what a method's ``fuse`` calls: ``forward`` for ``net(...)``)
        compiled, run under autocast with channels_last inputs and returning float32, standard-layout tensors."""
        if self.is_default:
            return net
        if self.compile:
            require_compile(torch.device(device).type)
        if self.channels_last:
            net.to(memory_format=torch.channels_last)
        for name in entries:
            # a submodule entry is set up through its forward; an instance attribute ``forward`` is what
            # nn.Module.__call__ runs, before the class's
            owner, attr = (getattr(net, name), "forward") if isinstance(getattr(net, name), nn.Module) else (net, name)
            run = getattr(owner, attr)
            if self.compile:
                run = torch.compile(run)
            setattr(owner, attr, self._wrap(run, device))
        return net

    def train_networks(self, networks: Iterable[nn.Module], device: str | torch.device) -> None:
        """Set up a trainer's ``networks`` in place: channels_last weights (the optimisers keep their parameters:
        only their storage changes) and compiled ``__call__`` (state dict keys unchanged)."""
        if self.compile:
            require_compile(torch.device(device).type)
        for net in networks:
            if self.channels_last:
                net.to(memory_format=torch.channels_last)
            if self.compile:
                net.compile()

    def _wrap(self, run: Callable[..., Any], device: str | torch.device) -> Callable[..., Any]:
        @functools.wraps(run)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            args = tuple(self.layout(a) if isinstance(a, torch.Tensor) else a for a in args)
            kwargs = {k: self.layout(v) if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
            with self.autocast(device):
                out = run(*args, **kwargs)
            return _as_float32(out)

        return wrapped


def _as_float32(out: Any) -> Any:
    """Floating tensors in ``out`` (a tensor, or tuples, lists, dicts of them) as float32 in standard layout."""
    if isinstance(out, torch.Tensor):
        return out.float().contiguous() if out.is_floating_point() else out
    if isinstance(out, (tuple, list)):
        return type(out)(_as_float32(o) for o in out)
    if isinstance(out, dict):
        return {k: _as_float32(v) for k, v in out.items()}
    return out


def _probe(x: torch.Tensor) -> torch.Tensor:
    return torch.sin(x) * 2.0 + 1.0


@functools.cache
def require_compile(device_type: str) -> None:
    """Compile and run a tiny function on ``device_type`` once, so that a missing C++ compiler (CPU) or Triton
    (CUDA) is reported before any work, not as a failure deep in the first batch."""
    try:
        torch.compile(_probe, fullgraph=True)(torch.ones(4, device=device_type))
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        need = "a C++ compiler (e.g. `apt install g++`, or set CXX)" if device_type == "cpu" else "Triton"
        raise RuntimeError(
            f"compile: torch.compile does not work on {device_type} here ({type(exc).__name__}: {first[:300]}); "
            f"it needs {need}. Install it, or run without compile (config `compile: false`, no --compile)."
        ) from exc
