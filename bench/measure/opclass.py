"""Operator classes: the one rule that sorts every operator a step runs into what it does.

Counting (bytes, peak memory, operator calls per class) and the profiler's time
attribution both use :func:`classify`, so a class means the same in every table.
An operator is classified by its aten name and the module it ran in (its dotted path
in the model, as ``named_modules`` gives it, innermost module last):

- ``attention``: every arithmetic operator of an attention module itself (the score
  matmul, softmax, the value matmul, or the fused SDPA kernel), not its qkv/proj linears;
  its work grows as S^2.
- ``token_mixing``: the matmuls of Mixer's token-mixing MLP (``mlp_tokens``), linear in S.
- ``dense``: every other matmul or convolution (channel MLPs, qkv/proj, patch embedding,
  head, ResNet convolutions): per-token or per-pixel work.
- ``norm_elementwise``: normalisation, activations, residual adds, softmax elsewhere,
  pooling: arithmetic that is not a matmul.
- ``data_movement``: views, copies, transposes, concatenation, allocation: no arithmetic.

The names are those of the reference models and timm's (``attn``, ``mlp_tokens``).
"""

from __future__ import annotations

from bench.schema import OPERATOR_CLASSES

CLASSES = OPERATOR_CLASSES  # the names the schema's Profile checks (bench.schema)

MATMUL_OPS = frozenset(
    (
        "mm",
        "addmm",
        "bmm",
        "baddbmm",
        "matmul",
        "linear",
        "convolution",
        "conv2d",
        "_convolution",
        "scaled_dot_product_attention",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable",
        "_scaled_dot_product_attention_math",
    )
)

# Data movement and allocation: no arithmetic at all (fvcore ignores the same kinds).
MOVEMENT_OPS = frozenset(
    (
        "view",
        "_unsafe_view",
        "reshape",
        "transpose",
        "t",
        "permute",
        "expand",
        "cat",
        "stack",
        "select",
        "slice",
        "unbind",
        "split",
        "split_with_sizes",
        "chunk",
        "narrow",
        "clone",
        "contiguous",
        "detach",
        "alias",
        "as_strided",
        "squeeze",
        "unsqueeze",
        "flatten",
        "copy_",
        "_to_copy",
        "lift_fresh",
        "empty",
        "empty_like",
        "empty_strided",
        "zeros",
        "zeros_like",
        "ones",
        "ones_like",
        "full",
        "full_like",
        "new_empty",
        "new_zeros",
        "new_ones",
        "new_full",
        "arange",
        "fill_",
        "zero_",
        "index",
        "gather",
        "roll",
        "constant_pad_nd",
        "unfold",
        "expand_as",
        "view_as",
        "repeat",
        "tile",
        "_reshape_alias",
        "index_select",
        "masked_fill",
        "as_strided_",
        "squeeze_",
        "unsqueeze_",
        "transpose_",
        "t_",
        "detach_",
        "to",
        "copy",
        "resize_",
        "_local_scalar_dense",
        "lift_fresh_copy",
    )
)

ATTENTION_MODULES = frozenset(("attn", "attention", "self_attn"))
TOKEN_MIXING_MODULES = frozenset(("mlp_tokens",))


def op_name(name: str) -> str:
    """'aten::addmm', 'aten.addmm.default' or 'addmm' -> 'addmm'."""
    name = name.split("::", 1)[-1]
    if name.startswith("aten."):
        name = name[len("aten.") :]
    return name.split(".", 1)[0]


def classify(op: str, module_path: str = "") -> str:
    """The class (one of :data:`CLASSES`) of operator ``op`` run inside module ``module_path``."""
    name = op_name(op)
    if name in MOVEMENT_OPS:
        return "data_movement"
    segments = module_path.split(".") if module_path else []
    if segments and segments[-1] in ATTENTION_MODULES:
        return "attention"
    if name in MATMUL_OPS:
        return "token_mixing" if TOKEN_MIXING_MODULES & set(segments) else "dense"
    return "norm_elementwise"
