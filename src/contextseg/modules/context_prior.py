"""Context Prior (Yu et al., "Context Prior for Scene Segmentation", CVPR 2020).

CPNet learns, for every pixel, which other pixels belong to its own class: a prior map P (N x N,
N = h*w) supervised by the ideal affinity map of the labels (`AffinityLoss`).
The intra-class context P X~ and the inter-class context (1 - P) X~ aggregate the features of an
Aggregation Module (spatially separable, depthwise convolutions with a large kernel) and are
concatenated with the backbone features. Structure follows the authors' released CPHead.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, Sequence

import torch
from torch import nn

from .common import ConvBNReLU, precise_dtype

__all__ = ["AggregationModule", "ContextPriorLayer", "PriorFactors", "RowLoss", "SigmoidPriorAttention", "row_blocks"]


class AggregationModule(nn.Module):
    """Aggregation Module (Sec. 3.3): CBR 3x3 in->out, then two parallel branches of spatially
    separable depthwise convolutions, (k x 1 -> 1 x k) and (1 x k -> k x 1), summed, BN, ReLU.

    Shape:
        ``(B, in_channels, h, w) -> (B, out_channels, h, w)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 11) -> None:
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"kernel_size must be odd to keep the size, got {kernel_size}")
        k, pad, c = kernel_size, kernel_size // 2, out_channels
        self.reduce_conv = ConvBNReLU(in_channels, out_channels, 3)
        self.branch_a = nn.Sequential(
            nn.Conv2d(c, c, (k, 1), padding=(pad, 0), groups=c), nn.Conv2d(c, c, (1, k), padding=(0, pad), groups=c)
        )
        self.branch_b = nn.Sequential(
            nn.Conv2d(c, c, (1, k), padding=(0, pad), groups=c), nn.Conv2d(c, c, (k, 1), padding=(pad, 0), groups=c)
        )
        self.norm = nn.BatchNorm2d(c)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce_conv(x)
        return self.act(self.norm(self.branch_a(x) + self.branch_b(x)))


class PriorFactors(NamedTuple):
    """The context prior map in factored form, never materialised:
    ``logits[b, i, j] = query[b, i] . key[j] + bias[j]`` (the 1x1 prior conv with its BatchNorm
    folded in), ``P = sigmoid(logits)``.

    Shape:
        ``query (B, N, C)``, ``key (N, C)``, ``bias (N,)``.
    """

    query: torch.Tensor
    key: torch.Tensor
    bias: torch.Tensor

    def logits(self, rows: torch.Tensor | slice | Sequence[int] | None = None) -> torch.Tensor:
        """Prior logits of the given rows (all by default): ``(B, rows, N)``."""
        query = self.query if rows is None else self.query[:, rows]
        return torch.matmul(query, self.key.t()) + self.bias


class RowLoss(Protocol):
    """A loss over the prior logits that only needs row-wise sums (the Affinity Loss): the fused
    layer hands it row blocks in forward and asks for their gradient in backward."""

    def accumulate(self, logits: torch.Tensor, r0: int, r1: int) -> None: ...  # logits (B, r1 - r0, N)

    def value(self) -> torch.Tensor: ...

    def start_backward(self, grad_out: torch.Tensor) -> None: ...

    def logit_grad(self, logits: torch.Tensor, r0: int, r1: int) -> torch.Tensor: ...  # (B, r1 - r0, N)


def row_blocks(batch: int, n: int, elements: int = 1 << 22):
    """Row ranges ``[r0, r1)`` of an (B, N, N) map: at most N/32 rows and ``elements`` entries per
    block, so one block temporary is <= 1/32 of the map and <= 16 MiB in float32."""
    step = max(1, min(n // 32, elements // max(1, batch * n)))
    for start in range(0, n, step):
        yield start, min(start + step, n)


def _attend(query: torch.Tensor, key: torch.Tensor, bias: torch.Tensor, row_loss: RowLoss | None) -> torch.Tensor:
    """``P V`` (B, N, C) block by block, V = query; the row loss sees each block of logits."""
    b, n, _ = query.shape
    out = torch.empty_like(query)
    for r0, r1 in row_blocks(b, n):
        logits = torch.matmul(query[:, r0:r1], key.t()).add_(bias)
        if row_loss is not None:
            row_loss.accumulate(logits, r0, r1)
        out[:, r0:r1] = torch.bmm(logits.sigmoid_(), query)
    return out


class SigmoidPriorAttention(torch.autograd.Function):
    """Intra/inter-class context and an optional row loss, memory linear in N (flash-attention
    style): forward walks row blocks of the prior, backward recomputes each block.

    ``intra = P V / N``, ``inter = (sum_j V_j - P V) / N`` with ``P = sigmoid(V K^T + b)``, V = query.
    Gradients, with ``D = (dintra - dinter) / N`` and ``G`` the row loss's logit gradient:
    ``dlogits = P (1 - P) (D V^T) + G``; ``dV = P^T D + sum_i dinter_i / N + dlogits K``;
    ``dK = sum_b dlogits^T V``; ``db = sum_{b,i} dlogits``.
    """

    @staticmethod
    def forward(ctx, query, key, bias, row_loss):
        n = query.shape[1]
        pv = _attend(query, key, bias, row_loss)
        loss = row_loss.value() if row_loss is not None else query.new_zeros(())
        ctx.save_for_backward(query, key, bias)
        ctx.row_loss = row_loss
        intra = pv / n
        inter = query.sum(1, keepdim=True) / n - intra
        return intra, inter, loss

    @staticmethod
    def backward(ctx, grad_intra, grad_inter, grad_loss):
        query, key, bias = ctx.saved_tensors
        row_loss = ctx.row_loss
        b, n, c = query.shape
        grad_intra = torch.zeros_like(query) if grad_intra is None else grad_intra
        grad_inter = torch.zeros_like(query) if grad_inter is None else grad_inter
        d = (grad_intra - grad_inter) / n  # dL/dP_ij = D_i . V_j
        grad_query = (grad_inter.sum(1, keepdim=True) / n).expand(b, n, c).clone()
        grad_key = torch.zeros_like(key)
        grad_bias = torch.zeros_like(bias)
        if row_loss is not None:
            row_loss.start_backward(grad_loss if grad_loss is not None else query.new_zeros(()))
        for r0, r1 in row_blocks(b, n):
            q = query[:, r0:r1]
            logits = torch.matmul(q, key.t()).add_(bias)
            grad_logits = torch.bmm(d[:, r0:r1], query.transpose(1, 2))  # dP
            if row_loss is not None:
                extra = row_loss.logit_grad(logits, r0, r1)
            p = logits.sigmoid_()
            grad_query += torch.bmm(p.transpose(1, 2), d[:, r0:r1])  # P^T D
            grad_logits.mul_(p).mul_(1 - p)
            if row_loss is not None:
                grad_logits += extra
                del extra
            del p, logits
            grad_query[:, r0:r1] += torch.matmul(grad_logits, key)
            grad_key += grad_logits.flatten(0, 1).t() @ q.flatten(0, 1)
            grad_bias += grad_logits.sum((0, 1))
        return grad_query, grad_key, grad_bias, None


class ContextPriorLayer(nn.Module):
    """Context Prior Layer (Sec. 3.2-3.3).

    1. X~ = AggregationModule(X) (prior_channels wide).
    2. Prior logits: 1x1 conv prior_channels -> N (no bias, ``prior_groups``) + BN(N); channel j at
       position i becomes entry (i, j), so row i is pixel i's prior over all N pixels;
       P = sigmoid(logits) (Eq. 1 of the released code, computed in float32).
    3. Eq. (6): intra context Y = P X~ / N and inter context Y- = (1 - P) X~ / N (divided by N, not
       by row sums), each reshaped to (B, prior_channels, h, w) and passed through CBR 1x1.
    4. Output ``concat[X, Y, Y-]``.

    ``fused=True`` (default) never stores the N x N map. The prior is a sigmoid attention with
    query = value = X~ (N x C) and key = the prior conv weights W (N x C). Its BatchNorm over the N
    channels folds into the key: in training the batch mean of channel j is ``W_j . mean(X~)`` and
    its variance ``W_j Sigma W_j^T`` (Sigma the C x C covariance of X~ over the batch and pixels),
    so logits = X~ (a W)^T + (beta - a mean) with ``a = gamma / sqrt(var + eps)``; the running
    statistics update as ``nn.BatchNorm2d`` updates them. Context is then computed in row blocks
    and recomputed in backward (`SigmoidPriorAttention`): memory O(N C) plus one block,
    against O(N^2) for ``fused=False``, the plain reference, which returns the dense logits.

    The prior is tied to the feature size: an input of another size is an error.

    Shape:
        ``x (B, C, h, w) -> (features (B, C + 2 * prior_channels, h, w), prior)`` with ``prior`` the
        logits ``(B, h*w, h*w)`` (plain) or their `PriorFactors` (fused).
    """

    def __init__(self, in_channels: int, prior_channels: int = 512, prior_size: tuple[int, int] | int = (64, 64), kernel_size: int = 11, prior_groups: int = 1, fused: bool = True) -> None:
        super().__init__()
        h, w = (prior_size, prior_size) if isinstance(prior_size, int) else (int(prior_size[0]), int(prior_size[1]))
        self.prior_size = (h, w)
        n = h * w
        if prior_channels % prior_groups or n % prior_groups:
            raise ValueError(f"prior_groups={prior_groups} must divide prior_channels={prior_channels} and N={n}")
        self.fused = fused
        self.aggregation = AggregationModule(in_channels, prior_channels, kernel_size)
        self.prior_conv = nn.Sequential(nn.Conv2d(prior_channels, n, 1, groups=prior_groups, bias=False), nn.BatchNorm2d(n))
        self.intra_conv = ConvBNReLU(prior_channels, prior_channels, 1)
        self.inter_conv = ConvBNReLU(prior_channels, prior_channels, 1)
        self.out_channels = in_channels + 2 * prior_channels

    def _check_size(self, x: torch.Tensor) -> None:
        h, w = x.shape[-2:]
        if (h, w) != self.prior_size:
            raise ValueError(
                f"ContextPriorLayer got a {h}x{w} feature map but its prior_size is {self.prior_size[0]}x{self.prior_size[1]}; "
                "the prior is tied to the training crop: run inference in sliding windows of the training crop "
                f"(contextseg eval --mode slide), or build the model with prior_size=({h}, {w})"
            )

    def forward(self, x: torch.Tensor, row_loss: RowLoss | None = None) -> tuple[torch.Tensor, torch.Tensor | PriorFactors]:
        features, prior, _ = self.forward_with_loss(x, row_loss)
        return features, prior

    def forward_with_loss(self, x: torch.Tensor, row_loss: RowLoss | None = None) -> tuple[torch.Tensor, torch.Tensor | PriorFactors, torch.Tensor | None]:
        """Like `forward`, and with ``row_loss`` (fused only) also that loss's value, computed
        on the same row blocks as the context: ``(features, prior, loss or None)``."""
        self._check_size(x)
        b, _, h, w = x.shape
        value = self.aggregation(x)
        n = h * w
        loss = None
        with torch.autocast(device_type=x.device.type, enabled=False):
            value32 = value.to(precise_dtype(value))
            if self.fused and not torch.jit.is_tracing() and not torch.onnx.is_in_onnx_export():
                prior = self.prior_factors(value32)
                if row_loss is None and not (torch.is_grad_enabled() and value32.requires_grad):
                    intra = _attend(*prior, None) / n
                    inter = prior.query.sum(1, keepdim=True) / n - intra
                else:
                    intra, inter, loss = SigmoidPriorAttention.apply(*prior, row_loss)
                    loss = loss if row_loss is not None else None
            else:
                if row_loss is not None:
                    raise ValueError("row_loss needs the fused ContextPriorLayer (fused=True)")
                prior = self.prior_conv(value32).view(b, n, n).transpose(1, 2)  # [b, i, j] = channel j at pixel i
                v = value32.flatten(2).transpose(1, 2)  # (B, N, C1)
                intra = torch.bmm(torch.sigmoid(prior), v) / n  # P X~ / N
                inter = v.sum(1, keepdim=True) / n - intra  # (1 - P) X~ / N without building 1 - P
            intra = intra.transpose(1, 2).reshape(b, -1, h, w)
            inter = inter.transpose(1, 2).reshape(b, -1, h, w)
        intra = self.intra_conv(intra.to(value.dtype))
        inter = self.inter_conv(inter.to(value.dtype))
        return torch.cat([x, intra, inter], dim=1), prior, loss

    def prior_factors(self, value: torch.Tensor) -> PriorFactors:
        """The prior conv and its BatchNorm as `PriorFactors` of X~ ``(B, C, h, w)``; in
        training, BatchNorm's batch statistics in closed form (and its running statistics
        updated), never a pass over the N x N map."""
        conv, norm = self.prior_conv
        b, c, h, w = value.shape
        n = h * w
        query = value.flatten(2).transpose(1, 2)  # (B, N, C)
        weight = conv.weight.flatten(1).to(value.dtype)  # (N, C / groups)
        if conv.groups > 1:  # output channel j of group g reads input channels of group g only
            weight = torch.block_diag(*weight.view(conv.groups, n // conv.groups, c // conv.groups).unbind(0))
        batch_stats = norm.training or norm.running_mean is None
        if batch_stats:
            flat = query.reshape(-1, c)
            group = _sync_group(norm)
            if group is None:
                count = flat.shape[0]
                centre = flat.mean(0)
                centred = flat - centre
                covariance = centred.t() @ centred / count  # Sigma, biased as BatchNorm normalises
            else:  # SyncBatchNorm: the statistics of every process's batch (sums all-reduced, with gradient)
                import warnings

                from torch.distributed.nn.functional import all_reduce

                local = torch.cat([flat.new_full((1,), flat.shape[0]), flat.sum(0), (flat.t() @ flat).flatten()])
                with warnings.catch_warnings():  # deprecated for a private successor; the autograd all-reduce we need
                    warnings.simplefilter("ignore", FutureWarning)
                    total = all_reduce(local, group=group)
                count = int(total[0].item())
                centre = total[1 : c + 1] / count
                covariance = total[c + 1 :].view(c, c) / count - torch.outer(centre, centre)
            mean = weight @ centre
            var = ((weight @ covariance) * weight).sum(1)  # W_j Sigma W_j^T
            if norm.training and norm.track_running_stats:
                self._update_running_stats(norm, mean.detach(), var.detach(), count)
        else:
            mean, var = norm.running_mean.to(value.dtype), norm.running_var.to(value.dtype)
        scale = torch.rsqrt(var + norm.eps)
        if norm.weight is not None:
            scale = scale * norm.weight.to(value.dtype)
        shift = -mean * scale
        if norm.bias is not None:
            shift = shift + norm.bias.to(value.dtype)
        return PriorFactors(query, weight * scale[:, None], shift)

    @staticmethod
    def _update_running_stats(norm: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
        """What ``nn.BatchNorm2d`` does in training: momentum (or cumulative) averages, variance unbiased."""
        momentum = 0.0 if norm.momentum is None else norm.momentum
        if norm.num_batches_tracked is not None:
            norm.num_batches_tracked.add_(1)
            if norm.momentum is None:
                momentum = 1.0 / float(norm.num_batches_tracked)
        with torch.no_grad():
            norm.running_mean.mul_(1 - momentum).add_(mean.to(norm.running_mean.dtype), alpha=momentum)
            unbiased = var * count / max(count - 1, 1)
            norm.running_var.mul_(1 - momentum).add_(unbiased.to(norm.running_var.dtype), alpha=momentum)


def _sync_group(norm: nn.Module):
    """The process group a training SyncBatchNorm reduces over, or None (plain BatchNorm, one process)."""
    if not isinstance(norm, nn.SyncBatchNorm) or not norm.training:
        return None
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = norm.process_group or dist.group.WORLD
    return group if dist.get_world_size(group) > 1 else None
