"""``Model.export_onnx(dir, use_cache=True)``: Hugging Face Optimum's ONNX layout with KV caches
(`isoform.optimum`). Causal LMs (GPT-2, Llama with GQA, Mistral with a sliding window
and one kv head) and encoder-decoders (T5, BART): each file passes the full checker and has Optimum's
interface; a plain `onnxruntime.InferenceSession` greedy loop over the files (prefill with an empty
past, then one token per step feeding the presents back) gives transformers' ``generate`` tokens for
a padded batch of 2, with first-step logits within 1e-4 of transformers'; isoform's search over the
files (`OptimumGenerator`, greedy and beam) gives them too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest_tokenization import tokenizer_dirs  # noqa: F401  (session fixture)
from test_onnx_decoders import GPT, GPT2, LLAMA, MISTRAL, NEO, VOCAB
from test_seq2seq_onnx import BART_GEN, T5_GEN

import isoform
from isoform.errors import ConfigError, InputError
from isoform.optimum import OptimumGenerator

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
transformers = pytest.importorskip("transformers")

TOL = 1e-4
NEW = 8
CAUSAL = [pytest.param("GPT2LMHeadModel", GPT2, 4, 8, id="gpt2"),
          pytest.param("LlamaForCausalLM", LLAMA, 2, 8, id="llama-gqa"),
          pytest.param("MistralForCausalLM", dict(MISTRAL, num_labels=2), 1, 8, id="mistral-window-mqa")]
SEQ2SEQ = [pytest.param("T5ForConditionalGeneration", T5_GEN, id="t5"),
           pytest.param("BartForConditionalGeneration", BART_GEN, id="bart")]
SEQ2SEQ_FILES = ["encoder_model.onnx", "decoder_model.onnx", "decoder_with_past_model.onnx"]


def session(path):
    onnx.checker.check_model(str(path), full_check=True)
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def dims(values) -> dict[str, list]:
    return {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in values}


def run(sess, **feeds) -> dict[str, np.ndarray]:
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(names, feeds)))


def presents_as_past(out: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"past_key_values" + k.removeprefix("present"): v for k, v in out.items() if k.startswith("present.")}


def left_padded(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two prompts of 7 and 4 tokens, the second left-padded with 0."""
    ids = np.random.default_rng(seed).integers(3, VOCAB, (2, 7))
    mask = np.ones_like(ids)
    mask[1, :3] = 0
    ids[mask == 0] = 0
    return ids, mask


@pytest.mark.parametrize(("cls", "config", "kv_heads", "head_dim"), CAUSAL)
def test_causal_files_generate_like_transformers(hf_checkpoint, tmp_path, cls, config, kv_heads, head_dim):
    path, hf = hf_checkpoint(cls, **config)
    model = isoform.Model.load(path, task="causal-lm")
    out = model.export_onnx(tmp_path / "onnx", use_cache=True)
    assert out == tmp_path / "onnx"
    assert sorted(f.name for f in out.iterdir()) == ["config.json", "generation_config.json", "model.onnx"]
    assert transformers.AutoConfig.from_pretrained(out).model_type == hf.config.model_type
    sess = session(out / "model.onnx")

    proto = onnx.load(out / "model.onnx")
    layers = hf.config.num_hidden_layers
    cache = {f"{p}.{i}.{kind}": ["batch", kv_heads, length, head_dim] for p, length in (("past_key_values", "past"),)
             for i in range(layers) for kind in ("key", "value")}
    inputs = dims(proto.graph.input)
    assert inputs == {"input_ids": ["batch", "seq"], "position_ids": ["batch", "seq"], "attention_mask": ["batch", "keys"],
                      **cache}
    assert dims(proto.graph.output) == {"logits": ["batch", "seq", VOCAB],
                                        **{"present" + k.removeprefix("past_key_values"): ["batch", kv_heads, "past+seq", head_dim]
                                           for k in cache}}

    ids, mask = left_padded()
    with torch.no_grad():
        hf_out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=NEW,
                             do_sample=False, eos_token_id=None, pad_token_id=0, output_logits=True,
                             return_dict_in_generate=True)
        first = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                   position_ids=torch.from_numpy(np.where(mask == 0, 1, np.cumsum(mask, 1) - 1))).logits.numpy()
    want, want_logits = hf_out.sequences.numpy(), np.stack([x.numpy() for x in hf_out.logits], 1)

    # a plain ONNX Runtime loop: empty past, then one token per step with the presents fed back
    past = {k: np.zeros((2, kv_heads, 0, head_dim), np.float32) for k in cache}
    positions, tokens, step_mask = np.where(mask == 0, 1, np.cumsum(mask, 1) - 1), ids, mask
    new, logits = [], []
    for step in range(NEW):
        res = run(sess, input_ids=tokens, attention_mask=step_mask, position_ids=positions, **past)
        if step == 0:
            assert res["logits"].shape == (2, 7, VOCAB)
            assert np.abs(res["logits"] - first)[mask.astype(bool)].max() <= TOL
        assert res["present.0.key"].shape == (2, kv_heads, 7 + step, head_dim)
        past, tokens = presents_as_past(res), res["logits"][:, -1].argmax(-1).reshape(2, 1)
        new.append(tokens[:, 0])
        logits.append(res["logits"][:, -1])
        step_mask = np.pad(step_mask, ((0, 0), (0, 1)), constant_values=1)
        positions = positions[:, -1:] + 1
    np.testing.assert_array_equal(np.stack(new, 1), want[:, 7:])
    assert np.abs(np.stack(logits, 1) - want_logits).max() <= TOL  # every step, not only its argmax

    # isoform's search over the files: greedy and beam search, as transformers
    gen = OptimumGenerator.load(out)
    got = gen.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, eos_token_id=None, pad_token_id=0)
    np.testing.assert_array_equal(got, want)
    with torch.no_grad():
        beams = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=5,
                            num_beams=3, do_sample=False, eos_token_id=None, pad_token_id=0).numpy()
    got = gen.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3, eos_token_id=None, pad_token_id=0)
    np.testing.assert_array_equal(got, beams)


@pytest.mark.parametrize(("cls", "config"), SEQ2SEQ)
def test_seq2seq_files_generate_like_transformers(hf_checkpoint, tmp_path, cls, config):
    path, hf = hf_checkpoint(cls, **config)
    model = isoform.Model.load(path, task="seq2seq-lm")
    out = model.export_onnx(tmp_path / "onnx", use_cache=True)
    assert sorted(f.name for f in out.iterdir()) == sorted(["config.json", "generation_config.json", *SEQ2SEQ_FILES])
    encoder, first, step = (session(out / name) for name in SEQ2SEQ_FILES)
    layers, (heads, head_dim) = model.arch.num_decoder_layers, model.arch.cross_shape
    d = model.arch.d_model

    def cache(prefix: str, part: str, length: str) -> dict[str, list]:
        return {f"{prefix}.{i}.{part}.{kind}": ["batch", heads, length, head_dim] for i in range(layers)
                for kind in ("key", "value")}

    want_io = {  # Optimum's names; this layout's dynamic axes
        "encoder": ({"input_ids": ["batch", "seq"], "attention_mask": ["batch", "seq"]},
                    {"last_hidden_state": ["batch", "seq", d]}),
        "first": ({"input_ids": ["batch", "seq"], "encoder_attention_mask": ["batch", "source"],
                   "encoder_hidden_states": ["batch", "source", d]},
                  {"logits": ["batch", "seq", VOCAB], **cache("present", "decoder", "seq"),
                   **cache("present", "encoder", "source")}),
        "step": ({"input_ids": ["batch", "seq"], "encoder_attention_mask": ["batch", "source"],
                  **cache("past_key_values", "decoder", "past"), **cache("past_key_values", "encoder", "source")},
                 {"logits": ["batch", "seq", VOCAB], **cache("present", "decoder", "past+seq")})}
    for (part, (ins, outs)), name in zip(want_io.items(), SEQ2SEQ_FILES):
        proto = onnx.load(out / name)
        assert (dims(proto.graph.input), dims(proto.graph.output)) == (ins, outs), part

    ids = np.random.default_rng(1).integers(3, VOCAB, (2, 9))
    mask = np.ones_like(ids)
    mask[1, 6:] = 0
    ids[mask == 0] = hf.config.pad_token_id
    start = hf.config.decoder_start_token_id
    with torch.no_grad():
        hf_out = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=NEW,
                             do_sample=False, output_logits=True, return_dict_in_generate=True)
        decoded = hf(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask),
                     decoder_input_ids=torch.full((2, 1), start)).logits.numpy()
    want, want_logits = hf_out.sequences.numpy(), np.stack([x.numpy() for x in hf_out.logits], 1)

    # a plain ONNX Runtime loop, finished rows padded as transformers does
    states = run(encoder, input_ids=ids, attention_mask=mask)["last_hidden_state"]
    res = run(first, input_ids=np.full((2, 1), start), encoder_attention_mask=mask, encoder_hidden_states=states)
    assert np.abs(res["logits"] - decoded).max() <= TOL
    past = presents_as_past(res)
    tokens, done, eos, pad = [np.full(2, start)], np.zeros(2, bool), hf.generation_config.eos_token_id, hf.config.pad_token_id
    logits = []
    while len(tokens) <= NEW and not done.all():
        logits.append(res["logits"][:, -1])
        token = np.where(done, pad, res["logits"][:, -1].argmax(-1))
        done |= token == eos
        tokens.append(token)
        res = run(step, input_ids=token.reshape(2, 1), encoder_attention_mask=mask, **past)
        past |= presents_as_past(res)
    np.testing.assert_array_equal(np.stack(tokens, 1), want)
    assert np.abs(np.stack(logits, 1) - want_logits).max() <= TOL  # every step, not only its argmax

    gen = OptimumGenerator.load(out)
    np.testing.assert_array_equal(gen.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False), want)
    with torch.no_grad():
        beams = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=5,
                            num_beams=3, do_sample=False).numpy()
    np.testing.assert_array_equal(gen.generate(ids, attention_mask=mask, max_new_tokens=5, num_beams=3), beams)


#: the other families: greedy generation from the files with isoform's search, as transformers
OTHERS = [pytest.param("OpenAIGPTLMHeadModel", GPT, id="openai-gpt"),
          pytest.param("GPTNeoForCausalLM", NEO, id="gpt-neo-local"),
          pytest.param("Qwen2ForCausalLM", LLAMA, id="qwen2"),
          pytest.param("PegasusForConditionalGeneration", dict(BART_GEN, scale_embedding=True), id="pegasus"),
          pytest.param("MarianMTModel", dict(BART_GEN, scale_embedding=True), id="marian"),
          pytest.param("M2M100ForConditionalGeneration", BART_GEN, id="m2m100"),
          pytest.param("BlenderbotForConditionalGeneration", BART_GEN, id="blenderbot"),
          pytest.param("BlenderbotSmallForConditionalGeneration", BART_GEN, id="blenderbot-small")]


@pytest.mark.parametrize(("cls", "config"), OTHERS)
def test_other_families_generate_from_their_files(hf_checkpoint, tmp_path, cls, config):
    path, hf = hf_checkpoint(cls, **config)
    seq2seq = hf.config.is_encoder_decoder
    model = isoform.Model.load(path, task="seq2seq-lm" if seq2seq else "causal-lm")
    out = model.export_onnx(tmp_path / "onnx", use_cache=True)
    for name in SEQ2SEQ_FILES if seq2seq else ["model.onnx"]:
        onnx.checker.check_model(str(out / name), full_check=True)
    ids, mask = left_padded(seed=2)
    if seq2seq:  # encoder inputs padded on the right, with the pad id
        ids, mask = ids[:, ::-1].copy(), mask[:, ::-1].copy()
        ids[mask == 0] = hf.config.pad_token_id
        options = {}
    else:
        options = dict(eos_token_id=None, pad_token_id=0)
    with torch.no_grad():
        want = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), max_new_tokens=NEW,
                           do_sample=False, **options).numpy()
    got = OptimumGenerator.load(out).generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False, **options)
    np.testing.assert_array_equal(got, want)


def test_cli_export_with_past(hf_checkpoint, tmp_path, capsys):
    from isoform.cli import main

    path, _ = hf_checkpoint("LlamaForCausalLM", **LLAMA)
    assert main(["export", str(path), "--task", "causal-lm", "--with-past", "-o", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "config.json, generation_config.json, model.onnx" in printed and ": ok" in printed
    assert OptimumGenerator.load(tmp_path / "out").decoder().encoder_decoder is False


def test_tokenizer_config_and_generation_config_files(hf_checkpoint, tokenizer_dirs, tmp_path):  # noqa: F811
    """What Optimum's ``from_pretrained`` (and pipelines) read beside the ONNX file, as transformers reads them."""
    tok_dir = tokenizer_dirs["gpt2"]
    vocab = transformers.AutoTokenizer.from_pretrained(tok_dir).vocab_size
    path, hf = hf_checkpoint("GPT2LMHeadModel", **dict(GPT2, vocab_size=vocab, eos_token_id=vocab - 1))
    out = isoform.Model.load(path, task="causal-lm").export_onnx(tmp_path / "onnx", use_cache=True, tokenizer=tok_dir)
    text = ["Hello world, again."]
    assert (transformers.AutoTokenizer.from_pretrained(out)(text)["input_ids"]
            == transformers.AutoTokenizer.from_pretrained(tok_dir)(text)["input_ids"])
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["architectures"] == ["GPT2LMHeadModel"] and config["use_cache"]
    assert transformers.AutoConfig.from_pretrained(out).n_layer == hf.config.n_layer
    assert transformers.GenerationConfig.from_pretrained(out).eos_token_id == vocab - 1


def test_bad_requests_are_clear_errors(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("GPT2LMHeadModel", **GPT2)
    with pytest.raises(InputError, match="task='causal-lm'"):
        isoform.Model.load(path).export_onnx(tmp_path / "base", use_cache=True)
    model = isoform.Model.load(path, task="causal-lm")
    with pytest.raises(InputError, match="only with use_cache=True"):
        model.export_onnx(tmp_path / "model.onnx", tokenizer=path)
    with pytest.raises(ConfigError, match="lacks"):
        OptimumGenerator.load(path)  # a checkpoint, not an ONNX directory
    decoder = OptimumGenerator.load(model.export_onnx(tmp_path / "onnx", use_cache=True)).decoder()
    with pytest.raises(InputError, match="before prefill"):
        decoder.step(np.zeros(1, np.int64))
    with pytest.raises(InputError, match="context window of 64"):
        decoder.prefill(np.ones((1, 60), np.int64), np.ones((1, 60), np.int64), max_new_tokens=10)
    with pytest.raises(InputError, match="input_ids"):
        decoder.prefill(np.full((1, 3), VOCAB), np.ones((1, 3), np.int64), max_new_tokens=1)
