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
from ..modules.context_prior import PriorFactors, SigmoidPriorAttention, row_blocks

__all__ = ["AffinityLoss", "affinity_targets"]

_LOG_FLOOR = -100.0  # PyTorch's BCE clamps log at -100
_TINY = math.exp(_LOG_FLOOR)


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


class AffinityRows:
    """The Affinity Loss as row sums: fed the prior logits block by block (rows ``r0:r1``), it
    needs O(B N C) memory, never A or P. Used by the dense loss below and, through the
    `RowLoss` protocol, by the fused Context Prior Layer.

    Per row i: ``unary_i = -v_i sum_j v_j BCE terms``, ``pa_i = sum_j P_ij A'_ij``,
    ``pv_i = sum_j P_ij v_j``, ``spec_i = sum_j v_j (1 - P_ij)(1 - A_ij)``.
    """

    def __init__(self, onehot: torch.Tensor, valid: torch.Tensor, unary_weight: float, global_weight: float) -> None:
        self.onehot, self.valid = onehot, valid
        self.unary_weight, self.global_weight = unary_weight, global_weight
        b, n = valid.shape
        self.unary, self.pa, self.pv, self.spec_num = (valid.new_zeros(b, n) for _ in range(4))

    def affinity(self, r0: int, r1: int) -> torch.Tensor:
        """Rows r0:r1 of A = L^ L^T, (B, r, N)."""
        return torch.bmm(self.onehot[:, r0:r1], self.onehot.transpose(1, 2))

    def accumulate(self, xc: torch.Tensor, r0: int, r1: int) -> None:
        valid, vi = self.valid, self.valid[:, r0:r1]
        a = self.affinity(r0, r1)
        lsp = F.logsigmoid(xc).clamp_min(_LOG_FLOOR)
        lsn = F.logsigmoid(-xc).clamp_min(_LOG_FLOOR)
        # Eq. (2), unary BCE: -[A log P + (1 - A) log(1 - P)], over valid pairs
        self.unary[:, r0:r1] = -vi * torch.bmm(lsn + a * (lsp - lsn), valid[..., None])[..., 0]
        del lsp
        p = torch.sigmoid(xc)
        p_diag = torch.diagonal(p[:, :, r0:r1], dim1=1, dim2=2)
        self.pa[:, r0:r1] = (p * a).sum(2) - p_diag * vi  # drop j = i: A' = A with the diagonal zeroed
        self.pv[:, r0:r1] = torch.bmm(p, valid[..., None])[..., 0]
        self.spec_num[:, r0:r1] = torch.bmm(torch.sigmoid(-xc) * (1 - a), valid[..., None])[..., 0]

    def value(self) -> torch.Tensor:
        onehot, valid = self.onehot, self.valid
        row_count = torch.bmm(onehot, onehot.sum(1, keepdim=True).transpose(1, 2))[..., 0]  # sum_j A_ij
        v_total = valid.sum(1, keepdim=True)  # sum_j v_j
        self.recall_den = _guard(row_count - valid)  # sum_j A'_ij
        self.prec_den = _guard(self.pv)
        self.spec_den = _guard(v_total - row_count)  # sum_j v_j (1 - A_ij)
        self.recall = self.pa / self.recall_den  # Eq. (3) T^r
        self.precision = self.pa / self.prec_den  # Eq. (3) T^p
        self.specificity = self.spec_num / self.spec_den  # Eq. (3) T^s
        self.pairs = (v_total**2).sum().clamp_min(1)  # B*N*N with extra_class
        self.rows = valid.sum().clamp_min(1)  # B*N with extra_class
        loss_unary = self.unary.sum() / self.pairs
        loss_global = (valid * (_neg_log(self.recall) + _neg_log(self.precision) + _neg_log(self.specificity))).sum() / self.rows
        return self.unary_weight * loss_unary + self.global_weight * loss_global

    def start_backward(self, grad_out: torch.Tensor) -> None:
        g = grad_out * self.global_weight * self.valid / self.rows
        f_r = g * _neg_log_grad(self.recall) / self.recall_den
        f_p = g * _neg_log_grad(self.precision) / self.prec_den
        self.f_s = g * _neg_log_grad(self.specificity) / self.spec_den
        self.coef_a = f_r + f_p  # multiplies A'_ij
        self.coef_v = f_p * self.precision * (self.pv > 0)  # d(1 / sum_j P_ij v_j), multiplies -v_j
        self.coef_unary = grad_out * self.unary_weight / self.pairs

    def logit_grad(self, xc: torch.Tensor, r0: int, r1: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """d loss / d logits of rows r0:r1, (B, r, N); written into ``out`` when given."""
        valid = self.valid
        a = self.affinity(r0, r1) > 0.5
        vj = valid[:, None, :]
        p = torch.sigmoid(xc)
        q = torch.sigmoid(-xc)
        out = torch.empty_like(xc) if out is None else out
        # unary, d/dx of -[A clamp(log P) + (1 - A) clamp(log(1 - P))]: -(1 - P) where A = 1,
        # P where A = 0, and 0 where the log was clamped at -100 (|x| > 100)
        torch.where(a, (q * (xc >= -100)).neg_(), p * (xc <= 100), out=out)
        out.mul_(self.coef_unary * valid[:, r0:r1, None]).mul_(vj)
        # global: dP/dx = P (1 - P) times the chain rule through T^r, T^p, T^s:
        # A'_ij (f_r/d_r + f_p/d_p) - v_j f_p T^p / d_p - v_j (1 - A_ij) f_s / d_s.
        # The specificity factor f_s (huge when T^s is tiny) only enters where A_ij = 0, so it
        # is never added and subtracted again: float32 keeps its digits on saturated rows.
        inner = torch.where(a, self.coef_a[:, r0:r1, None], vj * self.f_s[:, r0:r1, None].neg())
        inner.sub_(vj * self.coef_v[:, r0:r1, None])
        out.addcmul_(p.mul_(q), inner)
        diag = torch.diagonal(out[:, :, r0:r1], dim1=1, dim2=2)
        diag -= torch.diagonal(p[:, :, r0:r1], dim1=1, dim2=2) * self.coef_a[:, r0:r1] * valid[:, r0:r1]
        return out


class _AffinityLossFunction(torch.autograd.Function):
    """Loss value of Eq. (2)-(5) from the dense logits x (B, N, N), one-hot L (B, N, C) and valid v (B, N)."""

    @staticmethod
    def forward(ctx, x, onehot, valid, unary_weight: float, global_weight: float):
        b, n, _ = x.shape
        rows = AffinityRows(onehot, valid, unary_weight, global_weight)
        for r0, r1 in row_blocks(b, n):
            rows.accumulate(x[:, r0:r1], r0, r1)
        ctx.save_for_backward(x)
        ctx.rows = rows
        return rows.value()

    @staticmethod
    def backward(ctx, grad_out):
        (x,) = ctx.saved_tensors
        rows = ctx.rows
        b, n, _ = x.shape
        rows.start_backward(grad_out)
        grad = torch.empty_like(x)
        for r0, r1 in row_blocks(b, n):
            rows.logit_grad(x[:, r0:r1], r0, r1, out=grad[:, r0:r1])
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
    beyond the logits is one N x N gradient and chunk temporaries. Given the fused layer's
    `PriorFactors` instead of logits, the map is
    recomputed row block by row block and memory is O(B N C) (the head normally gets the loss
    from the layer's own forward pass, `rows`, which saves that recomputation).

    Shape:
        ``prior_logits (B, N, N)`` pre-sigmoid, row i = pixel i's prior over all N pixels, or
        `PriorFactors` of it;
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

    def rows(self, labels: torch.Tensor, prior_size: tuple[int, int], dtype: torch.dtype = torch.float32) -> AffinityRows:
        """The loss for these labels as an `AffinityRows`, to be fed the prior row by row
        (``ContextPriorLayer.forward_with_loss``)."""
        onehot, valid = affinity_targets(labels, (int(prior_size[0]), int(prior_size[1])), self.num_classes, self.ignore_index, self.ignore_mode)
        return AffinityRows(onehot.to(dtype), valid.to(dtype), self.unary_weight, self.global_weight)

    def forward(self, prior_logits: torch.Tensor | PriorFactors, labels: torch.Tensor, prior_size: tuple[int, int]) -> torch.Tensor:
        h, w = int(prior_size[0]), int(prior_size[1])
        n = h * w
        if isinstance(prior_logits, PriorFactors):  # the fused layer's prior: row sums without the N x N map
            query = prior_logits.query
            if query.shape[1] != n or labels.shape[0] != query.shape[0]:
                raise ValueError(f"prior factors hold {tuple(query.shape[:2])} (B, N) rows, expected N = {h}*{w} = {n} and batch {labels.shape[0]}")
            with torch.autocast(device_type=query.device.type, enabled=False):
                return SigmoidPriorAttention.apply(*prior_logits, self.rows(labels, (h, w), query.dtype))[2]
        b = prior_logits.shape[0]
        if prior_logits.shape != (b, n, n):
            raise ValueError(f"prior_logits must be (B, N, N) with N = {h}*{w} = {n}, got {tuple(prior_logits.shape)}")
        if labels.shape[0] != b:
            raise ValueError(f"labels batch {labels.shape[0]} does not match prior_logits batch {b}")
        dtype = precise_dtype(prior_logits)
        rows = self.rows(labels, (h, w), dtype)
        with torch.autocast(device_type=prior_logits.device.type, enabled=False):
            return _AffinityLossFunction.apply(prior_logits.to(dtype), rows.onehot, rows.valid, self.unary_weight, self.global_weight)
