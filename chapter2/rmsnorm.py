"""RMSNorm: bring each vector to a standard size before a layer reads it."""

import torch


def rms_norm(x, weight, eps):
    """Scale each vector to root-mean-square 1, then weigh each coordinate.

    rms = sqrt(mean(x²)) is a vector's typical magnitude; dividing by
    it (rsqrt is 1 / sqrt) puts every position on the same scale, and
    the learned `weight` stretches each coordinate. eps avoids a
    division by zero. The arithmetic runs in float32, even for a
    bfloat16 model, as the library does.
    """
    dtype = x.dtype
    x = x.float()
    x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x.to(dtype)


def norm(module, x):
    """One of the model's RMSNorm layers, by hand: its weight, its eps."""
    return rms_norm(x, module.weight, module.variance_epsilon)
