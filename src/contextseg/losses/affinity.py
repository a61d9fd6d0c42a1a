"""CPNet's Affinity Loss (Yu et al., "Context Prior for Scene Segmentation", CVPR 2020, Sec. 3.2).

The context prior map P (B, N, N), N = h*w, is supervised by the ideal affinity map A = L^ L^T
built from the labels (L^ the one-hot of the labels resized to the feature size): a unary BCE per
entry plus three global, row-wise terms (intra-class recall, inter-class specificity and intra-class
precision). A is never materialised: the loss is a custom autograd Function that walks the rows of
P in chunks and recomputes each chunk's terms in backward, so its peak memory beyond the logits is
their gradient plus a few chunk-sized temporaries.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..modules.common import precise_dtype

__all__ = ["AffinityLoss", "affinity_targets"]

_LOG_FLOOR = -100.0  # PyTorch's BCE clamps log at -100
_TINY = math.exp(_LOG_FLOOR)
_CHUNK_ELEMENTS = 1 << 22  # elements per chunk temporary (16 MiB in float32)


def affinity_targets(labels: torch.Tensor, prior_size: tuple[int, int], num_classes: int, ignore_index: int = 255, ignore_mode: str = "extra_class") -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot matrix L^ and valid vector v of the labels at the prior size.

    Labels are resized by nearest neighbour (``F.interpolate(mode="nearest")``, as the released code).
    ``extra_class``: ignore becomes class K, L^ is (B, N, K+1) and every pixel is valid.
    ``mask``: ignored pixels get an all-zero row, L^ is (B, N, K) and v marks the valid pixels.

    Returns:
        ``onehot (B, N, C)`` and ``valid (B, N)``, both float.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be (B, H, W), got {tuple(labels.shape)}")
    h, w = prior_size
    small = F.interpolate(labels[:, None].float(), size=(h, w), mode="nearest")[:, 0].long().flatten(1)
    ignored = small == ignore_index
    bad = ~ignored & ((small < 0) | (small >= num_classes))
    if bad.any():
        raise ValueError(f"labels hold values {sorted(set(small[bad].tolist()))[:5]} that are neither a class in 0..{num_classes - 1} nor the ignore index {ignore_index}")
    if ignore_mode == "extra_class":
        onehot = F.one_hot(torch.where(ignored, torch.full_like(small, num_classes), small), num_classes + 1)
        valid = torch.ones_like(small, dtype=torch.float32)
    elif ignore_mode == "mask":
        onehot = F.one_hot(torch.where(ignored, torch.zeros_like(small), small), num_classes) * (~ignored)[..., None]
        valid = (~ignored).float()
    else:
        raise ValueError(f"ignore_mode must be 'extra_class' or 'mask', got {ignore_mode!r}")
    return onehot.float(), valid


def _guard(d: torch.Tensor) -> torch.Tensor:
    """The released code's denominator guard: a value <= 0 becomes 1."""
    return torch.where(d > 0, d, torch.ones_like(d))


def _neg_log(x: torch.Tensor) -> torch.Tensor:
    """BCE(x, 1) = -max(log x, -100)."""
    return -torch.log(x.clamp_min(0)).clamp_min(_LOG_FLOOR)


def _neg_log_grad(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x > _TINY, -1.0 / x.clamp_min(_TINY), torch.zeros_like(x))


def _row_chunks(batch: int, n: int):
    """Row ranges of at most N/32 rows and 4M elements: each chunk temporary is <= 1/32 of the logits."""
    step = max(1, min(n // 32, _CHUNK_ELEMENTS // max(1, batch * n)))
    for start in range(0, n, step):
        yield start, min(start + step, n)


class _AffinityLossFunction(torch.autograd.Function):
    """Loss value of Eq. (2)-(5) from the logits x (B, N, N), one-hot L (B, N, C) and valid v (B, N)."""

    @staticmethod
    def forward(ctx, x, onehot, valid, unary_weight: float, global_weight: float):
        b, n, _ = x.shape
        lt = onehot.transpose(1, 2)  # (B, C, N)
        row_count = torch.bmm(onehot, onehot.sum(1, keepdim=True).transpose(1, 2))[..., 0]  # sum_j A_ij
        v_total = valid.sum(1, keepdim=True)  # sum_j v_j
        unary = x.new_zeros(b, n)
        pa = x.new_zeros(b, n)  # sum_j P_ij A'_ij
        pv = x.new_zeros(b, n)  # sum_j P_ij v_j
        spec_num = x.new_zeros(b, n)  # sum_j v_j (1 - P_ij)(1 - A_ij)
        for r0, r1 in _row_chunks(b, n):
            xc = x[:, r0:r1]
            a = torch.bmm(onehot[:, r0:r1], lt)  # (B, c, N) chunk of A
            p = torch.sigmoid(xc)
            lsp = F.logsigmoid(xc).clamp_min(_LOG_FLOOR)
            lsn = F.logsigmoid(-xc).clamp_min(_LOG_FLOOR)
            vi = valid[:, r0:r1]
            # Eq. (2), unary BCE: -[A log P + (1 - A) log(1 - P)], over valid pairs
            unary[:, r0:r1] = -vi * torch.bmm(lsn + a * (lsp - lsn), valid[..., None])[..., 0]
            p_diag = torch.diagonal(p[:, :, r0:r1], dim1=1, dim2=2)
            pa[:, r0:r1] = (p * a).sum(2) - p_diag * vi  # drop j = i: A' = A with the diagonal zeroed
            pv[:, r0:r1] = torch.bmm(p, valid[..., None])[..., 0]
            spec_num[:, r0:r1] = torch.bmm(torch.sigmoid(-xc) * (1 - a), valid[..., None])[..., 0]
        recall_den = _guard(row_count - valid)  # sum_j A'_ij
        prec_den = _guard(pv)
        spec_den = _guard(v_total - row_count)  # sum_j v_j (1 - A_ij)
        recall = pa / recall_den  # Eq. (3) T^r
        precision = pa / prec_den  # Eq. (3) T^p
        specificity = spec_num / spec_den  # Eq. (3) T^s
        pairs = (v_total**2).sum().clamp_min(1)  # B*N*N with extra_class
        rows = valid.sum().clamp_min(1)  # B*N with extra_class
        loss_unary = unary.sum() / pairs
        loss_global = (valid * (_neg_log(recall) + _neg_log(precision) + _neg_log(specificity))).sum() / rows
        ctx.save_for_backward(x, onehot, valid, recall, precision, specificity, recall_den, prec_den, spec_den, pv, pairs, rows)
        ctx.weights = (unary_weight, global_weight)
        return unary_weight * loss_unary + global_weight * loss_global

    @staticmethod
    def backward(ctx, grad_out):
        x, onehot, valid, recall, precision, specificity, recall_den, prec_den, spec_den, pv, pairs, rows = ctx.saved_tensors
        unary_weight, global_weight = ctx.weights
        b, n, _ = x.shape
        lt = onehot.transpose(1, 2)
        g = grad_out * global_weight * valid / rows
        f_r = g * _neg_log_grad(recall) / recall_den
        f_p = g * _neg_log_grad(precision) / prec_den
        f_s = g * _neg_log_grad(specificity) / spec_den
        coef_a = f_r + f_p  # multiplies A'_ij
        coef_v = f_p * precision * (pv > 0)  # d(1 / sum_j P_ij v_j), multiplies -v_j
        grad = torch.empty_like(x)
        cu = grad_out * unary_weight / pairs
        for r0, r1 in _row_chunks(b, n):
            xc = x[:, r0:r1]
            a = torch.bmm(onehot[:, r0:r1], lt) > 0.5  # chunk of A
            vj = valid[:, None, :]
            p = torch.sigmoid(xc)
            q = torch.sigmoid(-xc)
            out = grad[:, r0:r1]
            # unary, d/dx of -[A clamp(log P) + (1 - A) clamp(log(1 - P))]: -(1 - P) where A = 1,
            # P where A = 0, and 0 where the log was clamped at -100 (|x| > 100)
            torch.where(a, (q * (xc >= -100)).neg_(), p * (xc <= 100), out=out)
            out.mul_(cu * valid[:, r0:r1, None]).mul_(vj)
            # global: dP/dx = P (1 - P) times the chain rule through T^r, T^p, T^s:
            # A'_ij (f_r/d_r + f_p/d_p) - v_j f_p T^p / d_p - v_j (1 - A_ij) f_s / d_s.
            # The specificity factor f_s (huge when T^s is tiny) only enters where A_ij = 0, so it
            # is never added and subtracted again: float32 keeps its digits on saturated rows.
            inner = torch.where(a, coef_a[:, r0:r1, None], vj * f_s[:, r0:r1, None].neg())
            inner.sub_(vj * coef_v[:, r0:r1, None])
            out.addcmul_(p.mul_(q), inner)
            diag = torch.diagonal(out[:, :, r0:r1], dim1=1, dim2=2)
            diag -= torch.diagonal(p[:, :, r0:r1], dim1=1, dim2=2) * coef_a[:, r0:r1] * valid[:, r0:r1]
        return grad, None, None, None, None


class AffinityLoss(nn.Module):
    """Affinity Loss of CPNet: ``unary_weight * L_u + global_weight * (L_r + L_s + L_p)``.

    The ideal affinity map is ``A_ij = [l_i == l_j]`` over the labels resized (nearest) to the prior
    size. With ``ignore_mode="extra_class"`` (the released code) the ignore label is an extra class
    K; with ``"mask"`` (the authors' PriorLoss variant) every pair touching an ignored pixel is
    dropped from every sum and average. Terms, with A' = A minus its diagonal:

    - Eq. (2) ``L_u``: BCE(P_ij, A_ij) averaged over all B*N*N (valid) pairs;
    - Eq. (3)-(4) ``T^r_i = sum_j P_ij A'_ij / sum_j A'_ij``, ``T^p_i = sum_j P_ij A'_ij / sum_j P_ij``,
      ``T^s_i = sum_j (1-P_ij)(1-A_ij) / sum_j (1-A_ij)`` (a denominator <= 0 becomes 1), and each
      global term is the mean over the (valid) rows of ``-log T`` with log clamped at -100.

    A class that covers one cell of the grid has an empty A' row, so its recall and precision are
    0 and each adds a constant 100 / (B*N) with zero gradient (the released code's behaviour):
    the loss has a data-dependent floor, do not read it as a convergence signal.

    Runs in float32 with autocast off (float64 inputs stay float64, for gradcheck). Peak memory
    beyond the logits is one N x N gradient and chunk temporaries.

    Shape:
        ``prior_logits (B, N, N)`` pre-sigmoid, row i = pixel i's prior over all N pixels;
        ``labels (B, H, W)`` int64; ``prior_size (h, w)`` with ``h * w = N`` -> scalar.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, unary_weight: float = 1.0, global_weight: float = 1.0, ignore_mode: str = "extra_class") -> None:
        super().__init__()
        if ignore_mode not in ("extra_class", "mask"):
            raise ValueError(f"ignore_mode must be 'extra_class' or 'mask', got {ignore_mode!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.unary_weight = float(unary_weight)
        self.global_weight = float(global_weight)
        self.ignore_mode = ignore_mode

    def forward(self, prior_logits: torch.Tensor, labels: torch.Tensor, prior_size: tuple[int, int]) -> torch.Tensor:
        h, w = int(prior_size[0]), int(prior_size[1])
        b, n = prior_logits.shape[0], h * w
        if prior_logits.shape != (b, n, n):
            raise ValueError(f"prior_logits must be (B, N, N) with N = {h}*{w} = {n}, got {tuple(prior_logits.shape)}")
        if labels.shape[0] != b:
            raise ValueError(f"labels batch {labels.shape[0]} does not match prior_logits batch {b}")
        onehot, valid = affinity_targets(labels, (h, w), self.num_classes, self.ignore_index, self.ignore_mode)
        dtype = precise_dtype(prior_logits)
        with torch.autocast(device_type=prior_logits.device.type, enabled=False):
            return _AffinityLossFunction.apply(prior_logits.to(dtype), onehot.to(dtype), valid.to(dtype), self.unary_weight, self.global_weight)
