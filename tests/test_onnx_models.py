"""Every BERT-family architecture and head (the cases of test_bert_family.py, so new ones are picked up)
exported with `Model.export_onnx`, checked by the full ONNX checker, and run in a plain ONNX Runtime
session at two different shapes against transformers; plus the `isoform export` command."""

from __future__ import annotations

import copy

import numpy as np
import pytest

import isoform
from isoform.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from test_bert_family import CASES, TINY, TOL, config_for, hf_class, make_inputs, max_diff, reference  # noqa: E402


def feeds(session: ort.InferenceSession, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs by the session's input names; the optional ones transformers defaults get their defaults."""
    ids = inputs["input_ids"]
    defaults = {"attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    return {i.name: inputs.get(i.name, defaults.get(i.name)) for i in session.get_inputs()}


@pytest.mark.parametrize(("family", "cls", "config", "task"), CASES)
def test_exported_model_matches_transformers(hf_checkpoint, tmp_path, family, cls, config, task):
    config = config_for(config, task)
    path, hf = hf_checkpoint(hf_class(cls, task), **config)
    model = isoform.Model.load(path, task=task)
    out = model.export_onnx(tmp_path / "model.onnx")
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["architecture"] == model.arch.model_type and props["task"] == (task or "")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    assert names == list(model.graph.outputs)
    first = make_inputs(config, task, seq=11)
    second = {k: v[:1] for k, v in make_inputs(config, task, seed=1, seq=6).items()}  # batch 1, seq 6
    for inputs in (first, second):
        got = dict(zip(names, session.run(None, feeds(session, inputs))))
        assert max_diff(got, reference(hf, inputs)) <= TOL


def test_cli_export(hf_checkpoint, tmp_path, capsys):
    path, hf = hf_checkpoint("BertForMaskedLM", **TINY)
    out = tmp_path / "bert.onnx"
    assert main(["export", str(path), "--task", "masked-lm", "-o", str(out), "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "logits" in printed and ": ok" in printed
    proto = onnx.load(out)
    assert proto.opset_import[0].version == 18 and "Attention" not in {n.op_type for n in proto.graph.node}
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    inputs = make_inputs(TINY, "masked-lm")
    assert max_diff(dict(zip(["logits"], session.run(None, feeds(session, inputs)))), reference(hf, inputs)) <= TOL


def test_cli_export_errors(hf_checkpoint, tmp_path, capsys):
    path, _ = hf_checkpoint("BertForMaskedLM", **TINY)
    assert main(["export", str(path), "-o", str(tmp_path / "no" / "m.onnx")]) == 2
    assert "cannot write ONNX model" in capsys.readouterr().err
    assert main(["export", str(path), "-o", str(tmp_path / "m.onnx"), "--opset", "11"]) == 2
    assert "opset 11" in capsys.readouterr().err
    assert main(["export", str(path), "--task", "no-such-task", "-o", str(tmp_path / "m.onnx")]) == 2
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SystemExit):
        main(["export"])


# -- `isoform export --dtype`, and the parity check's sample inputs ---------------------------------
LLAMA = dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
GPT2 = dict(vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)
BART = dict(vocab_size=99, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=40,
            pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2)
T5 = dict(vocab_size=99, d_model=32, d_kv=12, d_ff=37, num_layers=2, num_decoder_layers=3, num_heads=4,
          relative_attention_num_buckets=8, relative_attention_max_distance=20, decoder_start_token_id=0)
VIT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=24, patch_size=4,
           encoder_stride=4)
CLIP = dict(text_config=dict(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                             max_position_embeddings=20, projection_dim=8, eos_token_id=49),
            vision_config=dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20,
                               image_size=12, patch_size=5, projection_dim=8), projection_dim=8)
WAV2VEC2 = dict(conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2), hidden_size=24, num_hidden_layers=2,
                num_attention_heads=4, intermediate_size=37, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                vocab_size=12)
HALF = {"float16": (onnx.TensorProto.FLOAT16, 2e-2), "bfloat16": (onnx.TensorProto.BFLOAT16, 6e-2)}  # see test_half_precision
CLI_ARCHS = {"bert": ("BertForMaskedLM", TINY, "masked-lm"), "llama": ("LlamaForCausalLM", LLAMA, "causal-lm"),
             "bart": ("BartForConditionalGeneration", BART, "seq2seq-lm")}


def as_float32_outputs(proto: onnx.ModelProto) -> bytes:
    """The model with every output cast to float32 (exact from f16/bf16), so plain ORT can return it."""
    proto = copy.deepcopy(proto)
    outputs = list(proto.graph.output)
    del proto.graph.output[:]
    for o in outputs:
        proto.graph.node.append(onnx.helper.make_node("Cast", [o.name], [o.name + ".f32"], to=onnx.TensorProto.FLOAT))
        proto.graph.output.append(onnx.helper.make_tensor_value_info(
            o.name + ".f32", onnx.TensorProto.FLOAT, [d.dim_param or d.dim_value for d in o.type.tensor_type.shape.dim]))
    return proto.SerializeToString()


def cli_inputs(task: str) -> dict[str, np.ndarray]:
    """Batch of 2, row 1 padded after 7 of 11 tokens; ids avoid the special ids 0..2."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, 99, (2, 11))
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    ids[mask == 0] = 1 if task == "seq2seq-lm" else 0  # the pad ids of BART and BERT/Llama
    inputs = {"input_ids": ids, "attention_mask": mask}
    if task == "masked-lm":
        inputs["token_type_ids"] = rng.integers(0, 2, ids.shape)
    if task == "seq2seq-lm":
        inputs |= {"decoder_input_ids": rng.integers(3, 99, (2, 6)), "decoder_attention_mask": np.ones((2, 6), np.int64)}
    return inputs


@pytest.mark.parametrize("dtype", list(HALF))
@pytest.mark.parametrize("arch", list(CLI_ARCHS))
def test_cli_export_half(hf_checkpoint, tmp_path, capsys, arch, dtype):
    cls, config, task = CLI_ARCHS[arch]
    path, hf = hf_checkpoint(cls, **config)
    out = tmp_path / "model.onnx"
    assert main(["export", str(path), "--task", task, "-o", str(out), "--dtype", dtype]) == 0
    printed = capsys.readouterr().out
    assert f"{dtype}\n" in printed and ": ok" in printed and "skipped" not in printed
    proto = onnx.load(out)
    onnx.checker.check_model(proto, full_check=True)
    elem, tol = HALF[dtype]
    params = {p.name for p in isoform.Model.load(path, task=task).graph.params}
    weights = [i for i in proto.graph.initializer if i.name in params]
    assert {i.name for i in weights} == params and {i.data_type for i in weights} == {elem}
    # other float initializers are only the small constants of the f32 compute between Casts
    others = [i for i in proto.graph.initializer if i.name not in params and i.data_type == onnx.TensorProto.FLOAT]
    assert sum(int(np.prod(i.dims)) for i in others) < 0.01 * sum(int(np.prod(i.dims)) for i in weights)
    assert {o.type.tensor_type.elem_type for o in proto.graph.output} == {elem}
    session = ort.InferenceSession(as_float32_outputs(proto), providers=["CPUExecutionProvider"])
    inputs = cli_inputs(task)
    got = dict(zip([o.name for o in proto.graph.output], session.run(None, feeds(session, inputs))))
    print(f"\ncli export {arch} {dtype}: ", end="")
    want = reference(hf, inputs)
    want = {k: want[k] for k in got}
    if task == "causal-lm":  # per-token outputs at padding are unspecified
        real = inputs["attention_mask"].astype(bool)
        got, want = {k: v[real] for k, v in got.items()}, {k: v[real] for k, v in want.items()}
    diff = max_diff(got, want)
    print(f"max abs diff vs transformers float32 {diff:.2e}")
    assert diff <= tol


def test_cli_export_bad_dtype(hf_checkpoint, tmp_path, capsys):
    path, _ = hf_checkpoint("BertForMaskedLM", **TINY)
    assert main(["export", str(path), "-o", str(tmp_path / "m.onnx"), "--dtype", "float64"]) == 2
    err = capsys.readouterr().err
    assert "dtype 'float64' is not supported" in err and "float16" in err and "bfloat16" in err and "fp16" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("cls", "config", "task"), [
    ("GPT2ForSequenceClassification", GPT2, "sequence-classification"),  # no pad token: one row at a time
    ("BartForSequenceClassification", BART, "sequence-classification"),  # pools at each row's eos
    ("T5ForConditionalGeneration", T5, "seq2seq-lm"),  # logits ~15: the tolerance scales with them
    ("ViTForMaskedImageModeling", VIT, "masked-image-modeling"),  # float pixels and a 0/1 patch mask
    ("DeiTForImageClassificationWithTeacher", VIT, "image-classification"),
    ("CLIPModel", CLIP, None),  # texts and images with batch dims of their own
    ("Wav2Vec2ForCTC", WAV2VEC2, "ctc"),  # raw audio, frames from the conv length formula
])
def test_cli_export_parity_check_inputs(hf_checkpoint, tmp_path, capsys, cls, config, task):
    """The parity check feeds inputs the model accepts (it used to fail these with an input error
    after writing the file) and real masks (all-ones decoder masks, not all-zero ones)."""
    path, _ = hf_checkpoint(cls, **dict(config, num_labels=3))
    assert main(["export", str(path), "--task", task, "-o", str(tmp_path / "m.onnx")]) == 0
    assert ": ok" in capsys.readouterr().out
