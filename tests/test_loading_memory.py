"""Loading streams (DESIGN: "never a full extra copy of the model in RAM"): `Model.load` converts each
checkpoint tensor to the backend's native array as it is read, releases its pages of the mapped file
before reading on, and `compile` keeps those natives without copying them. Functional checks only:
peak memory itself is measured by `python -m bench.encoder` (rss), not asserted here."""

from __future__ import annotations

import numpy as np
import pytest

import isoform
from isoform import backends
from isoform.ir.dtypes import DType
from isoform.weights import open_checkpoint
from isoform.weights.readers import SafetensorsCheckpoint

TINY = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40)


def _storage(backend: str, x):
    """Something identifying the memory of a native array (a copy has another)."""
    if backend == "torch":
        return x.data_ptr()
    if backend == "jax":
        return x.unsafe_buffer_pointer()
    return id(x)


@pytest.fixture
def bert_dir(hf_checkpoint):
    return hf_checkpoint("BertModel", **TINY)[0]


def test_load_streams_tensor_by_tensor_into_natives(bert_dir, backend, monkeypatch):
    events: list[tuple[str, str]] = []
    natives: dict[int, object] = {}
    be = backends.get(backend)
    to_native, release, compile_ = be.to_native, SafetensorsCheckpoint.release, be.compile
    compiling = []

    def spy_to_native(array, dtype):
        out = to_native(array, dtype)
        if not compiling:  # called by the loader
            events.append(("native", array.shape))
            natives[_storage(backend, out)] = out
        return out

    def spy_compile(graph, params):
        compiling.append(True)
        return compile_(graph, params)

    def spy_release(self, key):
        events.append(("release", key))
        release(self, key)

    monkeypatch.setattr(be, "to_native", spy_to_native)
    monkeypatch.setattr(be, "compile", spy_compile)
    monkeypatch.setattr(SafetensorsCheckpoint, "release", spy_release)
    model = isoform.Model.load(bert_dir, backend=backend)
    with open_checkpoint(bert_dir) as ckpt:
        keys = set(ckpt.keys())
    kinds = [kind for kind, _ in events]
    assert kinds.count("native") == len(model.graph.params)
    assert {k for kind, k in events if kind == "release"} == keys  # every tensor read is released
    # interleaved: each tensor is released before the next one is converted
    assert kinds == ["native", "release"] * len(keys)
    if backend != "onnxruntime":  # ORT copies weights into its session by design
        held = {_storage(backend, _param(backend, model.program, p.name)) for p in model.graph.params}
        assert held == set(natives), "compile copied natives that the loader had already converted"


def _param(backend: str, program, name: str):
    if backend == "torch":
        return program.module._params[name]
    if backend == "tensorflow":
        return program.module.variables_by_name[name]
    return program.params[name]


def test_released_views_stay_valid(bert_dir):
    with open_checkpoint(bert_dir) as ckpt:
        key = "embeddings.word_embeddings.weight"
        view = ckpt.get(key)
        before = view.copy()
        for k in ckpt:
            ckpt.release(k)
        np.testing.assert_array_equal(view, before)  # pages fault back in from the file


def test_model_to_another_backend_after_streamed_load(bert_dir):
    ids = np.array([[5, 6, 7, 0]])
    mask = np.array([[1, 1, 1, 0]])
    ref = isoform.Model.load(bert_dir)(input_ids=ids, attention_mask=mask).numpy()
    for name in backends.available():
        got = isoform.Model.load(bert_dir, backend=name).to("numpy")(input_ids=ids, attention_mask=mask).numpy()
        np.testing.assert_allclose(got["last_hidden_state"], ref["last_hidden_state"], atol=1e-5)


def test_jax_to_native_copies_numpy_input():
    pytest.importorskip("jax")
    be = backends.get("jax")
    a = np.arange(64 * 1024, dtype=np.float32)  # large enough for the anonymous-mapping buffer
    x = be.to_native(a, DType.f32)
    a[0] = 7.0  # the caller's array stays the caller's
    assert float(x[0]) == 0.0
    np.testing.assert_array_equal(np.asarray(be.to_native(a[::2], DType.bf16)), a[::2].astype(DType.bf16.numpy))
