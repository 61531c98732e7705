"""Symbolic dimensions.

A dimension is an ``int`` or a string holding an integer expression over named sizes, such as
``"batch"``, ``"seq"`` or ``"batch*seq"``. Expressions are kept in a canonical form (a polynomial
over the names, with an opaque ``(a)//(b)`` atom where a division is not exact), so two dims are
equal exactly when their strings are equal. Backends evaluate expressions with concrete sizes (or
with framework scalars, for dynamic shapes) through :func:`evaluate`.
"""

from __future__ import annotations

import ast
from collections import Counter
from collections.abc import Mapping
from typing import Any

from ..errors import GraphError

Dim = int | str
Shape = tuple[Dim, ...]

_Poly = dict[tuple[str, ...], int]  # monomial (sorted atoms, repeated for powers) -> coefficient


def _const(c: int) -> _Poly:
    return {(): c} if c else {}


def _add(a: _Poly, b: _Poly, sign: int = 1) -> _Poly:
    out = dict(a)
    for m, c in b.items():
        out[m] = out.get(m, 0) + sign * c
        if out[m] == 0:
            del out[m]
    return out


def _mul(a: _Poly, b: _Poly) -> _Poly:
    out: _Poly = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = tuple(sorted(ma + mb))
            out[m] = out.get(m, 0) + ca * cb
            if out[m] == 0:
                del out[m]
    return out


def _div_exact(a: _Poly, b: _Poly) -> _Poly | None:
    """a / b when b is a single monomial dividing every term of a, else None."""
    if len(b) != 1:
        return None
    ((mb, cb),) = b.items()
    out: _Poly = {}
    need = Counter(mb)
    for ma, ca in a.items():
        have = Counter(ma)
        if ca % cb or any(have[k] < n for k, n in need.items()):
            return None
        out[tuple(sorted((have - need).elements()))] = ca // cb
    return out


def _to_str(p: _Poly) -> str:
    if not p:
        return "0"
    terms = []
    for m in sorted(p, key=lambda m: (-len(m), m)):
        c = p[m]
        # a floordiv factor is parenthesized in a product: "x*(a)//(4)" would read as "(x*(a))//(4)"
        body = "*".join(f"({f})" if "//" in f and (len(m) > 1 or abs(c) != 1) else f for f in m)
        if not body:
            t = str(abs(c))
        elif abs(c) == 1:
            t = body
        else:
            t = f"{abs(c)}*{body}"
        terms.append(("-" if c < 0 else "+") + t)
    s = "".join(terms)
    return s[1:] if s.startswith("+") else s


def _poly(node: ast.AST, text: str) -> _Poly:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) and not isinstance(node.value, bool):
        return _const(node.value)
    if isinstance(node, ast.Name):
        return {(node.id,): 1}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return _mul(_const(-1), _poly(node.operand, text))
    if isinstance(node, ast.BinOp):
        a, b = _poly(node.left, text), _poly(node.right, text)
        if isinstance(node.op, ast.Add):
            return _add(a, b)
        if isinstance(node.op, ast.Sub):
            return _add(a, b, -1)
        if isinstance(node.op, ast.Mult):
            return _mul(a, b)
        if isinstance(node.op, ast.FloorDiv):
            if not b:
                raise GraphError(f"dimension expression {text!r} divides by zero")
            exact = _div_exact(a, b)
            if exact is not None:
                return exact
            if set(a) <= {()} and set(b) <= {()}:
                return _const(a.get((), 0) // b[()])
            return {(f"({_to_str(a)})//({_to_str(b)})",): 1}
    raise GraphError(f"invalid dimension expression {text!r}: only names, integers, + - * // are allowed")


def _parse(text: str) -> _Poly:
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError as e:
        raise GraphError(f"invalid dimension expression {text!r}") from e
    return _poly(tree.body, text)


def _from_poly(p: _Poly) -> Dim:
    if set(p) <= {()}:
        return p.get((), 0)
    return _to_str(p)


def _as_poly(d: Dim) -> _Poly:
    return _const(d) if isinstance(d, int) else _parse(d)


def canonical(d: Any) -> Dim:
    """Normalize a dim: ints stay ints, expressions take their canonical string (or an int if constant)."""
    if isinstance(d, bool) or not isinstance(d, int | str):
        raise GraphError(f"a dimension must be an int or a symbolic name, got {d!r}")
    if isinstance(d, int):
        return d
    return _from_poly(_parse(d))


def add(a: Dim, b: Dim) -> Dim:
    return a + b if isinstance(a, int) and isinstance(b, int) else _from_poly(_add(_as_poly(a), _as_poly(b)))


def sub(a: Dim, b: Dim) -> Dim:
    return a - b if isinstance(a, int) and isinstance(b, int) else _from_poly(_add(_as_poly(a), _as_poly(b), -1))


def mul(a: Dim, b: Dim) -> Dim:
    return a * b if isinstance(a, int) and isinstance(b, int) else _from_poly(_mul(_as_poly(a), _as_poly(b)))


def floordiv(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a // b
    return canonical(f"({a})//({b})")


def div_exact(a: Dim, b: Dim) -> Dim | None:
    """a / b if it divides exactly (as polynomials), else None."""
    if isinstance(a, int) and isinstance(b, int):
        return a // b if b and a % b == 0 else None
    q = _div_exact(_as_poly(a), _as_poly(b))
    return None if q is None else _from_poly(q)


def product(dims: tuple[Dim, ...] | list[Dim]) -> Dim:
    out: Dim = 1
    for d in dims:
        out = mul(out, d)
    return out


def names(d: Dim) -> set[str]:
    """Symbol names used by a dim."""
    if isinstance(d, int):
        return set()
    return {n.id for n in ast.walk(ast.parse(d, mode="eval")) if isinstance(n, ast.Name)}


def evaluate(d: Dim, env: Mapping[str, Any]) -> Any:
    """Value of a dim given sizes for its names; works with ints and with framework scalar tensors."""
    if isinstance(d, int):
        return d
    return _eval(ast.parse(d, mode="eval").body, env, d)


def _eval(node: ast.AST, env: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise GraphError(f"dimension {text!r} uses {node.id!r}, which no graph input defines")
        return env[node.id]
    if isinstance(node, ast.UnaryOp):
        return -_eval(node.operand, env, text)
    a, b = _eval(node.left, env, text), _eval(node.right, env, text)
    if isinstance(node.op, ast.Add):
        return a + b
    if isinstance(node.op, ast.Sub):
        return a - b
    if isinstance(node.op, ast.Mult):
        return a * b
    return a // b


def broadcast(a: Dim, b: Dim) -> Dim | None:
    """The broadcast of two dims, or None if they are incompatible."""
    if a == b or b == 1:
        return a
    if a == 1:
        return b
    if isinstance(a, int) and isinstance(b, int):
        return None
    if isinstance(a, int):  # a symbolic size constrained to a concrete one: checked at run time
        return a
    if isinstance(b, int):
        return b
    return None


def broadcast_shapes(*shapes: Shape) -> Shape | None:
    """NumPy-style broadcast of symbolic shapes, or None if incompatible."""
    rank = max(len(s) for s in shapes)
    out: list[Dim] = []
    for i in range(rank):
        d: Dim | None = 1
        for s in shapes:
            k = i - (rank - len(s))
            if k >= 0:
                d = broadcast(d, s[k])
                if d is None:
                    return None
        out.append(d)
    return tuple(out)


def fmt(shape: Shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"
