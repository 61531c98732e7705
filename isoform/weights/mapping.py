"""Declarative maps between checkpoint tensor names and graph parameter names.

Names are written as templates, not regexes: ``"encoder.layer.{i}.attention.self.query.weight"``.
A ``{name}`` placeholder matches a run of digits (``{name:regex}`` once in a rule gives another
pattern, e.g. ``Rename("{rest:.+}", "{rest}")`` keeps every other name); the same
placeholders appear on both sides of a rule, so every rule reads both ways: checkpoint -> graph when
loading, graph -> checkpoint (Hugging Face layout) when saving.

Rules, each one line of data:

* ``Rename(hf, param, transform=None)``: one tensor <-> one parameter.
* ``Split(hf, [p1, p2, ...], axis)``: one fused tensor (e.g. GPT-2 ``c_attn``) -> several parameters.
* ``Concat([h1, h2, ...], param, axis)``: several tensors -> one parameter (the inverse of Split).

``transform`` (a :mod:`~isoform.weights.transforms` object or a list of them) is applied in
checkpoint -> graph direction: to the single tensor for Rename, before splitting for Split, after
concatenating for Concat; saving applies its inverse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property

import numpy as np

from ..errors import WeightsError
from .transforms import Chain, Shape, Transform, as_transform

_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]+))?\}")


class Template:
    """A tensor name with ``{placeholders}``: matches names and fills values back in."""

    def __init__(self, text: str, patterns: Mapping[str, str] | None = None):
        self.text = text
        parts, names, pos = [], [], 0
        for m in _PLACEHOLDER.finditer(text):
            parts.append(re.escape(text[pos : m.start()]))
            name = m.group(1)
            pattern = m.group(2) or (patterns or {}).get(name, r"\d+")
            if name in names:
                parts.append(f"(?P={name})")
            else:
                names.append(name)
                parts.append(f"(?P<{name}>{pattern})")
            pos = m.end()
        parts.append(re.escape(text[pos:]))
        self.names = tuple(names)
        self.regex = re.compile("".join(parts))
        self._format = _PLACEHOLDER.sub(lambda m: "{" + m.group(1) + "}", text)

    def match(self, name: str) -> dict[str, str] | None:
        m = self.regex.fullmatch(name)
        return m.groupdict() if m else None

    def fill(self, values: Mapping[str, str]) -> str:
        return self._format.format(**values)

    def __repr__(self) -> str:
        return repr(self.text)


class Rule:
    """A many-to-one or one-to-many correspondence between checkpoint tensors and graph parameters.

    Use the constructors :class:`Rename`, :class:`Split` and :class:`Concat`.
    ``prefixed=False`` marks a name that is never under the map's ``prefix`` (e.g. a task head).
    """

    def __init__(
        self,
        hf: Sequence[str],
        params: Sequence[str],
        axis: int = 0,
        transform: Transform | Sequence[Transform] | None = None,
        sizes: Sequence[int] | None = None,
        prefixed: bool = True,
    ):
        if len(hf) > 1 and len(params) > 1:
            raise WeightsError(f"a rule maps one tensor to many or many to one, not {list(hf)} -> {list(params)}")
        # A placeholder's pattern, given once anywhere in the rule ({name:.+}), holds on every side.
        patterns = {m.group(1): m.group(2) for t in (*hf, *params) for m in _PLACEHOLDER.finditer(t) if m.group(2)}
        self.hf = tuple(Template(t, patterns) for t in hf)
        self.params = tuple(Template(t, patterns) for t in params)
        self.axis = axis
        self.transform = as_transform(transform)
        self.sizes = tuple(sizes) if sizes is not None else None
        self.prefixed = prefixed
        names = {frozenset(t.names) for t in (*self.hf, *self.params)}
        if len(names) != 1:
            raise WeightsError(f"rule {self!r}: every name must use the same placeholders to be invertible")

    def __repr__(self) -> str:
        hf = self.hf[0] if len(self.hf) == 1 else list(self.hf)
        params = self.params[0] if len(self.params) == 1 else list(self.params)
        extra = f", axis={self.axis}" if len(self.hf) + len(self.params) > 2 else ""
        if self.transform != Chain(()):
            extra += f", transform={self.transform!r}"
        if not self.prefixed:
            extra += ", prefixed=False"
        return f"{type(self).__name__}({hf!r}, {params!r}{extra})"

    # -- checkpoint -> graph ---------------------------------------------------------------
    def _split_sizes(self, total: int, sizes: Sequence[int] | None) -> list[int]:
        sizes = list(self.sizes or sizes or [])
        n = len(self.params) if len(self.params) > 1 else len(self.hf)
        if not sizes:
            if total % n:
                raise WeightsError(f"{self!r}: axis {self.axis} of size {total} does not split into {n} equal parts")
            sizes = [total // n] * n
        if sum(sizes) != total or len(sizes) != n:
            raise WeightsError(f"{self!r}: sizes {sizes} do not split axis {self.axis} of size {total}")
        return sizes

    def forward_shapes(self, hf_shapes: Sequence[Shape], sizes: Sequence[int] | None = None) -> list[Shape]:
        """Parameter shapes from checkpoint header shapes (``sizes``: split sizes, if not in the rule)."""
        shape = _concat_shape(hf_shapes, self.axis) if len(hf_shapes) > 1 else tuple(hf_shapes[0])
        shape = self.transform.out_shape(shape)
        if len(self.params) == 1:
            return [shape]
        ax = self.axis % len(shape)
        return [(*shape[:ax], s, *shape[ax + 1:]) for s in self._split_sizes(shape[ax], sizes)]

    def forward(self, arrays: Sequence[np.ndarray], sizes: Sequence[int] | None = None) -> list[np.ndarray]:
        """Graph parameters from the rule's checkpoint tensors (in template order)."""
        array = np.concatenate(arrays, axis=self.axis) if len(arrays) > 1 else arrays[0]
        array = self.transform.apply(array)
        if len(self.params) == 1:
            return [array]
        cuts = np.cumsum(self._split_sizes(array.shape[self.axis], sizes))[:-1]
        return list(np.split(array, cuts, axis=self.axis))

    # -- graph -> checkpoint ---------------------------------------------------------------
    def backward_shapes(self, param_shapes: Sequence[Shape]) -> list[Shape]:
        """Checkpoint shapes from parameter shapes (for saving)."""
        shape = _concat_shape(param_shapes, self.axis) if len(param_shapes) > 1 else tuple(param_shapes[0])
        shape = self.transform.inverse().out_shape(shape)
        if len(self.hf) == 1:
            return [shape]
        ax = self.axis % len(shape)
        return [(*shape[:ax], s, *shape[ax + 1:]) for s in self._split_sizes(shape[ax], None)]

    def backward(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Checkpoint tensors (in template order) from the rule's parameters."""
        array = np.concatenate(arrays, axis=self.axis) if len(arrays) > 1 else arrays[0]
        array = self.transform.inverse().apply(array)
        if len(self.hf) == 1:
            return [array]
        cuts = np.cumsum(self._split_sizes(array.shape[self.axis], None))[:-1]
        return list(np.split(array, cuts, axis=self.axis))


def _concat_shape(shapes: Sequence[Shape], axis: int) -> Shape:
    first = tuple(shapes[0])
    ax = axis % len(first)
    for s in shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != ax):
            raise WeightsError(f"cannot concatenate shapes {[list(x) for x in shapes]} along axis {axis}")
    return (*first[:ax], sum(s[ax] for s in shapes), *first[ax + 1:])


class Rename(Rule):
    """One checkpoint tensor is one graph parameter, optionally transformed."""

    def __init__(self, hf: str, param: str, transform: Transform | Sequence[Transform] | None = None, *,
                 prefixed: bool = True):
        super().__init__([hf], [param], 0, transform, None, prefixed)


class Split(Rule):
    """One fused checkpoint tensor -> several parameters along ``axis`` (after ``transform``).
    Piece sizes come from ``sizes``, else from the expected parameter shapes, else equal parts."""

    def __init__(self, hf: str, params: Sequence[str], axis: int = 0,
                 transform: Transform | Sequence[Transform] | None = None, *,
                 sizes: Sequence[int] | None = None, prefixed: bool = True):
        super().__init__([hf], list(params), axis, transform, sizes, prefixed)


class Concat(Rule):
    """Several checkpoint tensors concatenated along ``axis`` (then ``transform``) -> one parameter.
    Saving splits it back by ``sizes``, else into equal parts."""

    def __init__(self, hf: Sequence[str], param: str, axis: int = 0,
                 transform: Transform | Sequence[Transform] | None = None, *,
                 sizes: Sequence[int] | None = None, prefixed: bool = True):
        super().__init__(list(hf), [param], axis, transform, sizes, prefixed)


Match = tuple[Rule, int, dict[str, str]]  # rule, index of the matched template, placeholder values


class WeightMap:
    """How an architecture's graph parameters are stored in a Hugging Face checkpoint.

    * ``rules``: :class:`Rename` / :class:`Split` / :class:`Concat`, tried in order (first match wins).
    * ``ignore``: regexes (``re.search``) of checkpoint names that may be present and are skipped
      (buffers such as ``position_ids``, heads the task does not use).
    * ``tied``: ``{param: other_param}``: ``param`` is the same tensor as ``other_param`` (e.g.
      ``lm_head.weight`` -> the word embeddings). Loaded once, stored once by :func:`save_params`.
    * ``prefix``: a base-model prefix such as ``"bert."`` (or several): checkpoint names match with
      or without it, so ``BertModel`` and ``BertForMaskedLM`` checkpoints both load.
    * ``save_prefix``: whether :func:`save_params` writes ``prefix`` (the first one) before the names
      of ``prefixed`` rules, as ``transformers`` does for models with a task head.
    """

    def __init__(
        self,
        rules: Iterable[Rule],
        *,
        ignore: Iterable[str] = (),
        tied: Mapping[str, str] | None = None,
        prefix: str | Sequence[str] = "",
        save_prefix: bool = False,
    ):
        self.rules = list(rules)
        self.ignore = list(ignore)
        self.tied = dict(tied or {})
        self.prefixes = tuple(p for p in ([prefix] if isinstance(prefix, str) else prefix) if p)
        self.save_prefix = save_prefix
        for alias, target in self.tied.items():
            if target in self.tied:
                raise WeightsError(f"tied param {alias!r} -> {target!r}, which is itself tied to {self.tied[target]!r}")

    def extend(
        self, rules: Iterable[Rule] = (), *, ignore: Iterable[str] = (), tied: Mapping[str, str] | None = None,
        save_prefix: bool | None = None,
    ) -> WeightMap:
        """A new map with more rules (tried after these), ignore patterns and ties: e.g. base + task head."""
        return WeightMap(
            [*self.rules, *rules], ignore=[*self.ignore, *ignore], tied={**self.tied, **(tied or {})},
            prefix=self.prefixes, save_prefix=self.save_prefix if save_prefix is None else save_prefix,
        )

    @cached_property
    def _ignore_re(self) -> re.Pattern[str] | None:
        return re.compile("|".join(f"(?:{p})" for p in self.ignore)) if self.ignore else None

    def _variants(self, key: str) -> list[str]:
        return [key[len(p) :] for p in self.prefixes if key.startswith(p)]

    def match_checkpoint(self, key: str) -> Match | None:
        """The rule, template index and placeholder values a checkpoint name maps through, or None."""
        stripped = self._variants(key)
        for rule in self.rules:
            for name in [key, *stripped] if rule.prefixed else [key]:
                for i, t in enumerate(rule.hf):
                    values = t.match(name)
                    if values is not None:
                        return rule, i, values
        return None

    def match_param(self, name: str) -> Match | None:
        """The rule, template index and placeholder values a graph parameter name maps through, or None."""
        for rule in self.rules:
            for i, t in enumerate(rule.params):
                values = t.match(name)
                if values is not None:
                    return rule, i, values
        return None

    def is_ignored(self, key: str) -> bool:
        """True if checkpoint name ``key`` (with or without the prefix) may be skipped."""
        rx = self._ignore_re
        return rx is not None and any(rx.search(k) for k in [key, *self._variants(key)])

    def hf_name(self, rule: Rule, index: int, values: Mapping[str, str]) -> str:
        """The checkpoint name to save for ``rule.hf[index]``, with the prefix if ``save_prefix``."""
        name = rule.hf[index].fill(values)
        return self.prefixes[0] + name if self.save_prefix and rule.prefixed and self.prefixes else name

    def __repr__(self) -> str:
        rules = "".join(f"    {r!r},\n" for r in self.rules)
        return f"WeightMap([\n{rules}], ignore={self.ignore!r}, tied={self.tied!r}, prefix={self.prefixes!r})"
