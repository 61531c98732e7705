"""isoform's IR: graphs of a small set of ops with symbolic shapes, built by layer code."""

from . import dims
from .builder import GraphBuilder, Tensor, fn
from .dtypes import DType, as_dtype
from .graph import Graph, Node, Value
from .passes import decompose
from .registry import OPS, Attr, OpDef, TensorType, all_ops, get_op, register

__all__ = ["OPS", "Attr", "DType", "Graph", "GraphBuilder", "Node", "OpDef", "Tensor", "TensorType", "Value",
           "all_ops", "as_dtype", "decompose", "dims", "fn", "get_op", "register"]
