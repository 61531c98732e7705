"""T5 and BART generation graphs exported to ONNX (encoder + decoder step), at the default opset and
at opset 18 (decomposed attention / RMS norm), and run with plain onnxruntime sessions: a greedy loop
over the two files gives transformers' greedy `generate` tokens and (within 1e-4 beyond transformers'
own float32 error) its logits; the files pass the full checker and have the documented interface."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from test_seq2seq import BART, T5, hf_class, make_inputs

import isoform
from isoform.errors import InputError

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

NEW = 7
# transformers sizes generate's DynamicCache by the *encoder* layer count: decoders here have fewer layers
T5_GEN = dict(T5, num_layers=3, num_decoder_layers=2)
BART_GEN = dict(BART, encoder_layers=3, decoder_layers=2, forced_eos_token_id=None)


def onnx_greedy(paths, start: int, eos: int, pad: int, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Greedy decoding over the exported files, finished rows padded as transformers does; returns
    the tokens and the logits of every step [batch, steps, vocab]."""
    encoder, step = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in paths)
    cross = {"past_key_values" + k.removeprefix("present"): v for k, v in zip(
        [o.name for o in encoder.get_outputs()], encoder.run(None, {"input_ids": ids, "attention_mask": mask}))}
    batch, cache = ids.shape[0], NEW + 1
    past = {i.name: np.zeros((batch, i.shape[1], cache, i.shape[3]), np.float32) for i in step.get_inputs()
            if i.name.endswith((".decoder.key", ".decoder.value"))}
    out, done, logits = [np.full(batch, start)], np.zeros(batch, bool), []
    for t in range(NEW):
        feeds = {"input_ids": out[-1].reshape(-1, 1).astype(np.int64), "cache_position": np.asarray(t, np.int64),
                 "attention_mask": np.ones((batch, cache), np.int64), "encoder_attention_mask": mask, **cross, **past}
        results = dict(zip([o.name for o in step.get_outputs()], step.run(None, feeds)))
        past = {"past_key_values" + k.removeprefix("present"): v for k, v in results.items() if k.startswith("present.")}
        logits.append(results["logits"])
        token = np.where(done, pad, results["logits"].argmax(-1))
        done |= token == eos
        out.append(token)
        if done.all():
            break
    return np.stack(out, axis=1), np.stack(logits, axis=1)


def dims(value_info) -> list:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def check_interface(paths, vocab: int, layers: int, heads: int, head_dim: int, opset: int | None) -> None:
    """The full checker, opset and lowering choices, and the interface documented in
    `isoform.architectures.seq2seq` (names, dynamic axes) of the encoder and step files."""
    from isoform.backends.onnx import default_opset

    cross = {f"present.{i}.encoder.{n}": ["batch", heads, "seq", head_dim] for i in range(layers) for n in ("key", "value")}
    encoder, step = (onnx.load(p) for p in paths)
    for proto in (encoder, step):
        onnx.checker.check_model(proto, full_check=True)
        assert proto.opset_import[0].version == (opset or default_opset())
        assert ("Attention" in {n.op_type for n in proto.graph.node}) == (opset is None)
    assert {i.name: dims(i) for i in encoder.graph.input} == {"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"]}
    assert {o.name: dims(o) for o in encoder.graph.output} == cross
    inputs = {i.name: dims(i) for i in step.graph.input}
    past = {k: v for k, v in inputs.items() if k.startswith("past_key_values.") and ".decoder." in k}
    assert sorted(past) == sorted(f"past_key_values.{i}.decoder.{n}" for i in range(layers) for n in ("key", "value"))
    assert all(v[0] == "batch" and v[2] == "cache" for v in past.values())
    assert {k: v for k, v in inputs.items() if k not in past} == {
        "input_ids": ["batch", "seq"], "cache_position": [], "attention_mask": ["batch", "cache"],
        "encoder_attention_mask": ["batch", "source"],
        **{k.replace("present.", "past_key_values."): ["batch", heads, "source", head_dim] for k in cross}}
    outputs = {o.name: dims(o) for o in step.graph.output}
    assert outputs.pop("logits") == ["batch", vocab]
    assert outputs == {k.replace("past_key_values.", "present."): v for k, v in past.items()}


@pytest.mark.parametrize("opset", [None, 18])
@pytest.mark.parametrize(("cls", "config"), [("T5", T5_GEN), ("Bart", BART_GEN)])
def test_exported_greedy_matches_transformers(hf_checkpoint, tmp_path, cls, config, opset):
    path, hf = hf_checkpoint(hf_class(cls, "seq2seq-lm"), **config)
    model = isoform.Model.load(path, task="seq2seq-lm")
    paths = model.export_generation_onnx(tmp_path, opset=opset)
    assert [p.name for p in paths] == ["encoder.onnx", "decoder.onnx"]
    check_interface(paths, config["vocab_size"], model.arch.num_decoder_layers, *model.arch.cross_shape, opset)
    inputs = make_inputs(config)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    kwargs = dict(attention_mask=torch.from_numpy(mask), max_new_tokens=NEW, do_sample=False, num_beams=1,
                  return_dict_in_generate=True, output_logits=True)
    with torch.no_grad():
        want = hf.generate(torch.from_numpy(ids), **kwargs)
        exact = copy.deepcopy(hf).to(torch.float64).generate(torch.from_numpy(ids), **kwargs)  # its own f32 error
    eos, pad = config.get("eos_token_id", 1), config.get("pad_token_id", 0)
    got, logits = onnx_greedy(paths, model.arch.decoder_start_token_id, eos, pad, ids, mask)
    np.testing.assert_array_equal(got, want.sequences.numpy())
    want_logits, exact_logits = (torch.stack(o.logits, 1).to(torch.float64).numpy() for o in (want, exact))
    np.testing.assert_array_equal(exact.sequences.numpy(), want.sequences.numpy())
    assert np.abs(logits - want_logits).max() <= 1e-4 + np.abs(want_logits - exact_logits).max()


def test_export_needs_seq2seq_lm(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint(hf_class("T5", None), **T5)
    with pytest.raises(InputError, match="seq2seq-lm"):
        isoform.Model.load(path).export_generation_onnx(tmp_path)
