"""RNN-Transducer loss behind one function, with two interchangeable backends.

``backend="torchaudio"`` calls :func:`torchaudio.functional.rnnt_loss` (a fused CUDA/C++ kernel; the
one to use on GPU). ``backend="torch"`` is pure PyTorch; on CPU it is several times faster than
torchaudio's kernel (see ``benchmarks/bench_rnnt_loss.py``). ``backend="auto"`` picks torchaudio on
CUDA and the pure version elsewhere. Both give the same numbers (tested to 1e-4 on loss and gradients).

The pure version. With ``e[t, u] = log P(y_{u+1} | t, u)`` (emit) and ``b[t, u] = log P(blank | t, u)``,
the forward variable obeys::

    alpha[t, u] = logaddexp(alpha[t-1, u] + b[t-1, u],  alpha[t, u-1] + e[t, u-1])

Within one row ``t`` the second term is a linear recursion along ``u``, so the whole row has a closed
form: with ``C[t, u] = sum_{j<u} e[t, j]`` and ``v[t] = alpha[t-1] + b[t-1]`` (arrivals from below),
``alpha[t] = C[t] + logcumsumexp(v[t] - C[t])``: one vectorised step per frame, ``T`` steps. The
backward variable ``beta[t, u]`` (log probability of finishing from node ``(t, u)``) has the mirror
form ``beta[t] = -C[t] + reverse_logcumsumexp(w[t] + C[t])`` with ``w[t] = b[t] + beta[t+1]`` (leaving
upwards; at ``t = T_b - 1`` only the final blank at ``u = U_b`` leaves). The log-likelihood is
``log Z = alpha[T_b-1, U_b] + b[T_b-1, U_b]`` and the gradients are lattice occupancies::

    d(-log Z)/d b[t, u] = -exp(alpha[t, u] + w[t, u] - log Z)
    d(-log Z)/d e[t, u] = -exp(alpha[t, u] + e[t, u] + beta[t, u+1] - log Z)

so autograd never walks the ``T`` loop. The recursions run in float64 on the small ``(B, T, U+1)``
lattice. The ``(B, T, U+1, V)`` logits meet the lattice once: ``log_softmax`` is evaluated only at the
blank and at the next label, and the backward pass builds the logits' gradient in a single buffer
(``d log_softmax(x)_k / dx = onehot_k - softmax(x)``).

Shapes: ``B`` batch, ``T`` encoder frames, ``U`` target length (``U+1`` predictor positions), ``V`` vocab.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import Tensor

log = logging.getLogger(__name__)

Backend = Literal["auto", "torchaudio", "torch"]
Reduction = Literal["mean", "sum", "none"]
_BACKENDS = ("auto", "torchaudio", "torch")
_REDUCTIONS = ("mean", "sum", "none")


def rnnt_loss(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int = 0,
    backend: Backend = "auto",
    *,
    reduction: Reduction = "mean",
) -> Tensor:
    """RNN-T negative log-likelihood, reduced like torchaudio's ``rnnt_loss``.

    Args:
        logits: ``(B, T, U+1, V)`` unnormalised joiner outputs (log-softmax is applied here, in float32).
            ``T`` and ``U+1`` may exceed the longest utterance; the excess is sliced off.
        targets: ``(B, U)`` integer labels; entries past ``target_lengths`` are ignored (any value).
        logit_lengths: ``(B,)`` valid frames per utterance, ``1 <= T_b <= T``.
        target_lengths: ``(B,)`` labels per utterance, ``0 <= U_b <= U``.
        blank: id of the blank label.
        backend: ``"torchaudio"``, ``"torch"`` (pure PyTorch), or ``"auto"`` (torchaudio on CUDA when it
            imports, pure PyTorch otherwise).
        reduction: ``"mean"`` (default: mean over the batch of per-utterance NLLs, as torchaudio),
            ``"sum"``, or ``"none"`` (``(B,)`` per-utterance NLLs).

    Returns:
        Scalar loss (or ``(B,)`` with ``reduction="none"``), float32.

    Raises:
        ValueError: on a bad backend/reduction/blank, or on shapes and lengths that do not fit.
    """
    if backend not in _BACKENDS:
        raise ValueError(f"rnnt_loss: backend must be one of {_BACKENDS}, got {backend!r}")
    if reduction not in _REDUCTIONS:
        raise ValueError(f"rnnt_loss: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    logits, targets, logit_lengths, target_lengths = _check_and_trim(
        logits, targets, logit_lengths, target_lengths, blank
    )
    if backend == "auto":
        backend = "torchaudio" if logits.is_cuda and _torchaudio_available() else "torch"
    if backend == "torchaudio":
        return _rnnt_loss_torchaudio(logits, targets, logit_lengths, target_lengths, blank, reduction)
    losses = _rnnt_nll_torch(logits, targets, logit_lengths, target_lengths, blank)
    return _reduce(losses, reduction)


def _check_and_trim(
    logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Validate user inputs; slice ``logits``/``targets`` to the longest utterance; pad targets with blank."""
    if logits.dim() != 4:
        raise ValueError(f"rnnt_loss: logits must be (B, T, U+1, V), got shape {tuple(logits.shape)}")
    B, T, U1, V = logits.shape
    if targets.dim() != 2 or targets.size(0) != B:
        raise ValueError(f"rnnt_loss: targets must be (B={B}, U), got shape {tuple(targets.shape)}")
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise ValueError(f"rnnt_loss: targets must hold integer label ids, got dtype {targets.dtype}")
    for name, lens in (("logit_lengths", logit_lengths), ("target_lengths", target_lengths)):
        if lens.shape != (B,):
            raise ValueError(f"rnnt_loss: {name} must have shape (B,)=({B},), got {tuple(lens.shape)}")
    if not 0 <= blank < V:
        raise ValueError(f"rnnt_loss: blank={blank} is not a label id of a vocabulary of V={V}")
    # One host sync for all length checks (needed anyway to slice to the longest utterance).
    lo_t, hi_t, lo_u, hi_u = torch.stack(
        [logit_lengths.min(), logit_lengths.max(), target_lengths.min(), target_lengths.max()]
    ).tolist()
    if lo_t < 1 or hi_t > T:
        raise ValueError(f"rnnt_loss: logit_lengths must lie in [1, T={T}], got min {lo_t}, max {hi_t}")
    if lo_u < 0 or hi_u > U1 - 1 or hi_u > targets.size(1):
        raise ValueError(
            f"rnnt_loss: target_lengths must lie in [0, U] with U+1={U1} logit positions and "
            f"{targets.size(1)} target columns, got min {lo_u}, max {hi_u}"
        )
    logits = logits[:, :hi_t, : hi_u + 1]  # (B, T_max, U_max+1, V)
    targets = targets[:, :hi_u].long()
    pad = torch.arange(hi_u, device=targets.device) >= target_lengths[:, None]  # (B, U_max)
    targets = targets.masked_fill(pad, blank)
    return logits, targets, logit_lengths.long(), target_lengths.long()


def _rnnt_nll_torch(
    logits: Tensor, targets: Tensor, logit_lengths: Tensor, target_lengths: Tensor, blank: int
) -> Tensor:
    """Per-utterance NLL ``(B,)`` by the closed-form row recursions (module docstring)."""
    blank_lp, emit_lp = _BlankEmitLogProbs.apply(logits.float(), targets, blank)  # (B, T, U+1), (B, T, U)
    return _LatticeNLL.apply(blank_lp, emit_lp, logit_lengths, target_lengths)


class _LatticeNLL(torch.autograd.Function):
    """``-log Z`` per utterance from the blank/emit log-probabilities, with analytic gradients."""

    @staticmethod
    def forward(ctx, blank_lp: Tensor, emit_lp: Tensor, logit_lengths: Tensor, target_lengths: Tensor) -> Tensor:
        B, T, U1 = blank_lp.shape
        b = blank_lp.double()  # (B, T, U+1)
        e = emit_lp.double()  # (B, T, U)
        C = torch.cat([e.new_zeros(B, T, 1), e.cumsum(-1)], -1)  # (B, T, U+1)
        # Unreachable continuations get a large finite negative (not -inf: no inf - inf = nan).
        neg = torch.finfo(torch.float64).min / 8

        alpha = torch.empty_like(b)
        alpha[:, 0] = C[:, 0]  # row 0: emissions only
        for t in range(1, T):
            alpha[:, t] = C[:, t] + torch.logcumsumexp(alpha[:, t - 1] + b[:, t - 1] - C[:, t], dim=-1)

        u_index = torch.arange(U1, device=b.device)
        past_target = u_index[None, :] > target_lengths[:, None]  # (B, U+1)
        final = u_index[None, :] == target_lengths[:, None]  # (B, U+1)
        beta = torch.empty_like(b)
        w = torch.empty_like(b)  # w[t, u]: blank at (t, u), then finish from (t+1, u)
        beta_up = b.new_full((B, U1), neg)  # beta[t+1]
        for t in range(T - 1, -1, -1):
            last = (logit_lengths == t + 1)[:, None]  # (B, 1): row t is the utterance's last frame
            w_t = torch.where(last, torch.where(final, b[:, t], neg), b[:, t] + beta_up)
            w_t = w_t.masked_fill(past_target | (logit_lengths <= t)[:, None], neg)
            beta_t = torch.logcumsumexp((w_t + C[:, t]).flip(-1), dim=-1).flip(-1) - C[:, t]
            w[:, t], beta[:, t], beta_up = w_t, beta_t, beta_t

        log_z = beta[:, 0, 0]  # (B,) == alpha[T_b-1, U_b] + b[T_b-1, U_b]
        occupancy = alpha - log_z[:, None, None]  # (B, T, U+1)
        grad_blank = -(occupancy + w).exp()
        grad_emit = -(occupancy[:, :, :-1] + e + beta[:, :, 1:]).exp()
        ctx.save_for_backward(grad_blank.to(blank_lp.dtype), grad_emit.to(emit_lp.dtype))
        return (-log_z).to(blank_lp.dtype)

    @staticmethod
    def backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, None, None]:
        grad_blank, grad_emit = ctx.saved_tensors
        scale = grad_out[:, None, None]  # (B, 1, 1)
        return grad_blank * scale, grad_emit * scale, None, None


class _BlankEmitLogProbs(torch.autograd.Function):
    """``log_softmax(logits)`` at the blank and at the next target label, without the full log-softmax.

    Autograd through ``log_softmax`` + indexing would allocate several ``(B, T, U+1, V)`` gradient
    buffers (one per indexing op, plus the softmax); the backward here builds the gradient in one:
    ``d lp_k / d x = onehot_k - softmax(x)``.
    """

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, blank: int) -> tuple[Tensor, Tensor]:
        B, T, U1, _ = logits.shape
        norm = logits.logsumexp(-1)  # (B, T, U+1)
        index = targets[:, None, :, None].expand(B, T, U1 - 1, 1)  # (B, T, U, 1)
        blank_lp = logits[..., blank] - norm  # (B, T, U+1)
        emit_lp = logits[:, :, :-1].gather(-1, index).squeeze(-1) - norm[:, :, :-1]  # (B, T, U)
        ctx.save_for_backward(logits, norm, index)
        ctx.blank = blank
        return blank_lp, emit_lp

    @staticmethod
    def backward(ctx, grad_blank: Tensor, grad_emit: Tensor) -> tuple[Tensor, None, None]:
        logits, norm, index = ctx.saved_tensors
        grad_blank = grad_blank.contiguous()
        total = grad_blank.clone()  # (B, T, U+1): sum of the incoming gradients per lattice node
        total[:, :, :-1] += grad_emit
        grad = (logits - norm[..., None]).exp_().mul_(-total[..., None])  # (B, T, U+1, V): -softmax * total
        grad[..., ctx.blank] += grad_blank
        grad[:, :, :-1].scatter_add_(-1, index, grad_emit[..., None])
        return grad, None, None


def _rnnt_loss_torchaudio(
    logits: Tensor,
    targets: Tensor,
    logit_lengths: Tensor,
    target_lengths: Tensor,
    blank: int,
    reduction: Reduction,
) -> Tensor:
    import torchaudio.functional as taF

    return taF.rnnt_loss(
        # the kernel takes contiguous float32/float16; bf16 autocast outputs are upcast here
        logits.float().contiguous(),
        targets.int().contiguous(),
        logit_lengths.int(),
        target_lengths.int(),
        blank=blank,
        reduction=reduction,
    )


def _reduce(losses: Tensor, reduction: Reduction) -> Tensor:
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    return losses


def _torchaudio_available() -> bool:
    try:
        import torchaudio.functional  # noqa: F401
    except (ImportError, OSError) as err:  # OSError: a CUDA-linked torchaudio next to a CPU torch
        log.warning("torchaudio unavailable (%s); using the pure-PyTorch RNN-T loss", err)
        return False
    return True
