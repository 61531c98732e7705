"""transformers habits work on isoform objects, compared with transformers computed here: its streamers
passed to ``generate``, ``generation_config=`` and ``return_dict_in_generate`` (scores, logits, beam
scores and indices), integer indexing of ``ModelOutput``, and the tokenizer's special-token setters,
padding/truncation sides, chat templates and ``BatchEncoding.to``."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import threading

import numpy as np
import pytest
from conftest_tokenization import tokenizer_dirs  # noqa: F401  (session fixture)
from test_generate import BART, hf_generate, left_padded, prepared, prompts  # noqa: F401  (module fixture)

import isoform
from isoform.errors import InputError, TokenizerError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")


# -- streamers ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chat_model(hf_checkpoint, tokenizer_dirs):  # noqa: F811
    """(directory, transformers model): a GPT-2 over the byte-level BPE of the ``gpt2`` tokenizer fixture
    (its files copied in), so decoded generations are real text, multi-byte characters included."""
    words = tokenizer_dirs["gpt2"]
    size = len(transformers.AutoTokenizer.from_pretrained(words))
    source, hf = hf_checkpoint("GPT2LMHeadModel", seed=3, vocab_size=size, n_embd=32, n_layer=2, n_head=4,
                               n_positions=64, tie_word_embeddings=False, initializer_range=0.2)
    path = source.parent / "interop-gpt2"
    if not path.exists():
        shutil.copytree(source, path)
        for f in words.iterdir():
            shutil.copy(f, path / f.name)
    return path, hf


def streamed(hf_or_model, streamer_cls, tok, ids, decode, **options) -> str:
    """What ``streamer_cls(tok, **decode)`` prints (TextStreamer) or yields (TextIteratorStreamer) for a generation."""
    streamer = streamer_cls(tok, **decode)
    run = (lambda: hf_or_model.generate(torch.from_numpy(ids), streamer=streamer, **options)) \
        if isinstance(hf_or_model, torch.nn.Module) else (lambda: hf_or_model.generate(ids, streamer=streamer, **options))
    if streamer_cls is transformers.TextIteratorStreamer:
        thread = threading.Thread(target=run)
        thread.start()
        text = "".join(streamer)
        thread.join()
        return text
    out = io.StringIO()
    with contextlib.redirect_stdout(out), torch.no_grad():
        run()
    return out.getvalue()


@pytest.mark.parametrize("decode", [{}, {"skip_prompt": True, "skip_special_tokens": True}], ids=["plain", "skip"])
@pytest.mark.parametrize("streamer_cls", ["TextStreamer", "TextIteratorStreamer"])
@pytest.mark.parametrize("which", ["isoform", "transformers"])
def test_transformers_streamers(chat_model, streamer_cls, which, decode):
    path, hf = chat_model
    cls = getattr(transformers, streamer_cls)
    ref_tok = transformers.AutoTokenizer.from_pretrained(path)
    tok = isoform.Tokenizer.load(path) if which == "isoform" else ref_tok
    model = isoform.Model.load(path, task="causal-lm")
    ids = np.asarray([ref_tok.encode("The quick brown fox")], np.int64)
    options = dict(max_new_tokens=24, do_sample=False, pad_token_id=0)
    want = streamed(hf, cls, ref_tok, ids, decode, **options)
    got = streamed(model, cls, tok, ids, decode, **options)
    assert got == want
    assert len(want) > 10 and want.startswith("The quick brown fox") != bool(decode)  # generated text streamed


def test_streamer_rule(chat_model):
    """An object with ``put`` is a transformers streamer (the prompt first, then [rows] per step, ``end``);
    a plain callable is isoform's (each step's tokens only); anything else is refused."""
    path, _ = chat_model
    model = isoform.Model.load(path, task="causal-lm")
    ids = np.asarray([[5, 9, 13]], np.int64)
    out = model.generate(ids, max_new_tokens=4)

    class Put:
        def __init__(self):
            self.calls = []

        def put(self, value):
            self.calls.append(np.asarray(value).tolist())

        def end(self):
            self.calls.append("end")

    put = Put()
    model.generate(ids, max_new_tokens=4, streamer=put)
    assert put.calls == [ids.tolist(), *[[t] for t in out[0, 3:].tolist()], "end"]
    seen = []
    model.generate(ids, max_new_tokens=4, streamer=seen.append)
    assert [s.tolist() for s in seen] == [[t] for t in out[0, 3:].tolist()]
    with pytest.raises(InputError, match="streamer must be callable"):
        model.generate(ids, max_new_tokens=4, streamer=42)


# -- generation_config= and return_dict_in_generate ---------------------------------------------
def test_generation_config_argument(prepared):  # noqa: F811
    path, hf = prepared("gpt2")
    model = isoform.Model.load(path, task="causal-lm")
    ids, mask = prompts()
    config = transformers.GenerationConfig(max_new_tokens=5, num_beams=2, repetition_penalty=1.3)
    want = hf_generate(hf, ids, mask, generation_config=config)
    for given in (config, config.to_dict(), isoform.generation.GenerationConfig(max_new_tokens=5, num_beams=2,
                                                                                repetition_penalty=1.3)):
        np.testing.assert_array_equal(model.generate(ids, mask, generation_config=given), want)
    # explicit keyword arguments win over generation_config, which wins over the model's generation_config.json
    want = hf_generate(hf, ids, mask, generation_config=config, max_new_tokens=3)
    np.testing.assert_array_equal(model.generate(ids, mask, generation_config=config, max_new_tokens=3), want)
    assert config.max_new_tokens == 5  # the caller's config is not changed
    with pytest.raises(InputError, match=r"generation_config.*num_beams"):
        model.generate(ids, mask, generation_config={"num_beams": 0})
    with pytest.raises(InputError, match="generation_config must be"):
        model.generate(ids, mask, generation_config=[("num_beams", 2)])


SCORED = {
    "greedy": dict(max_new_tokens=8, repetition_penalty=1.3, min_new_tokens=3),
    "beam": dict(max_new_tokens=8, num_beams=3, num_return_sequences=2, length_penalty=0.7, min_new_tokens=2),
}


@pytest.mark.parametrize("variant", SCORED)
def test_return_dict_in_generate(prepared, variant, backend):  # noqa: F811
    path, hf = prepared("llama")
    model = isoform.Model.load(path, backend=backend, task="causal-lm")
    ids, mask = prompts()
    options = dict(SCORED[variant], do_sample=False, return_dict_in_generate=True, output_scores=True,
                   output_logits=True)
    want = hf_generate_dict(hf, ids, mask, **options)
    got = model.generate(ids, mask, **options)
    np.testing.assert_array_equal(got.sequences, want.sequences.numpy())
    np.testing.assert_array_equal(got[0], got.sequences)
    assert len(got.scores) == len(want.scores) == len(got.logits) == len(want.logits) > 3
    for mine, theirs in [*zip(got.scores, want.scores), *zip(got.logits, want.logits)]:
        np.testing.assert_allclose(mine, theirs.numpy(), atol=1e-4, rtol=0)  # -inf where transformers has it
    assert np.isinf(np.stack(got.scores)).any()  # eos banned by min_new_tokens / processed log-probs
    if variant == "beam":
        np.testing.assert_allclose(got.sequences_scores, want.sequences_scores.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(got.beam_indices, want.beam_indices.numpy())
        assert list(got) == ["sequences", "sequences_scores", "scores", "logits", "beam_indices"]
    else:
        assert got.sequences_scores is None and got.beam_indices is None
        assert list(got) == ["sequences", "scores", "logits"]
    # without return_dict_in_generate: the default int64 array, whatever output_scores says
    plain = model.generate(ids, mask, **{**options, "return_dict_in_generate": False})
    assert isinstance(plain, np.ndarray) and plain.dtype == np.int64
    np.testing.assert_array_equal(plain, got.sequences)


def hf_generate_dict(hf, ids, mask, **options):
    ids, mask = left_padded(ids, mask)
    with torch.no_grad():
        return hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **options)


@pytest.mark.parametrize("variant", SCORED)
def test_return_dict_seq2seq(hf_checkpoint, variant):
    """The same record for an encoder-decoder (BART: forced eos, the decoder start token as the prompt)."""
    path, hf = hf_checkpoint("BartForConditionalGeneration", **BART)
    model = isoform.Model.load(path, task="seq2seq-lm")
    ids, mask = prompts()
    options = dict(SCORED[variant], do_sample=False, return_dict_in_generate=True, output_scores=True,
                   output_logits=True)
    with torch.no_grad():
        want = hf.generate(torch.from_numpy(ids), attention_mask=torch.from_numpy(mask), **options)
    got = model.generate(ids, mask, **options)
    np.testing.assert_array_equal(got.sequences, want.sequences.numpy())
    assert len(got.scores) == len(want.scores) > 3
    for mine, theirs in [*zip(got.scores, want.scores), *zip(got.logits, want.logits)]:
        np.testing.assert_allclose(mine, theirs.numpy(), atol=1e-4, rtol=0)
    if variant == "beam":
        np.testing.assert_allclose(got.sequences_scores, want.sequences_scores.numpy(), atol=1e-4, rtol=0)
        np.testing.assert_array_equal(got.beam_indices, want.beam_indices.numpy())


def test_return_dict_sampling_and_defaults(prepared):  # noqa: F811
    """Seeded sampling (not comparable with torch's random stream): each step's scores are top_k-processed
    logits, and the sampled token is one of the kept ones; without output_* flags only ``sequences``."""
    path, _ = prepared("gpt2")
    model = isoform.Model.load(path, task="causal-lm")
    ids, mask = prompts()
    got = model.generate(ids, mask, max_new_tokens=4, return_dict_in_generate=True)
    assert list(got) == ["sequences"] and got.scores is None and got.logits is None
    got = model.generate(ids, mask, max_new_tokens=5, do_sample=True, top_k=4, seed=1, eos_token_id=None,
                         return_dict_in_generate=True, output_scores=True, output_logits=True)
    new = got.sequences[:, -5:]
    for step, (scores, logits) in enumerate(zip(got.scores, got.logits)):
        kept = np.isfinite(scores)
        assert (kept.sum(-1) == 4).all()
        np.testing.assert_array_equal(scores[kept], logits[kept])
        assert kept[np.arange(len(new)), new[:, step]].all()
    with pytest.raises(InputError, match="stream=True"):
        model.generate(ids, mask, max_new_tokens=4, return_dict_in_generate=True, stream=True)
    with pytest.raises(InputError, match="output_attentions"):
        model.generate(ids, mask, max_new_tokens=4, output_attentions=True)


# -- ModelOutput in transformers' order -----------------------------------------------------------
TINY_BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                 max_position_embeddings=40, num_labels=3)
ORDERED = {  # transformers class: (config, isoform task, labels given, extra call options)
    "BertModel": (TINY_BERT, None, False, {}),
    "BertForSequenceClassification": (TINY_BERT, "sequence-classification", True, {}),
    "BertForQuestionAnswering": (dict(TINY_BERT, num_labels=2), "question-answering", False, {}),
    "BertForMaskedLM": (TINY_BERT, "masked-lm", False, {"output_hidden_states": True}),
    "LlamaForCausalLM": (dict(vocab_size=99, hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64),
                         "causal-lm", True, {}),
    "BartForConditionalGeneration": (BART, "seq2seq-lm", False, {}),
    "BartModel": (BART, None, False, {}),
}


@pytest.mark.parametrize("cls", ORDERED)
def test_model_output_indexing(hf_checkpoint, cls):
    config, task, with_labels, extra = ORDERED[cls]
    path, hf = hf_checkpoint(cls, **config)
    model = isoform.Model.load(path, task=task)
    rng = np.random.default_rng(0)
    x = {"input_ids": rng.integers(3, 99, (2, 9)), "attention_mask": np.ones((2, 9), np.int64)}
    if cls.startswith("Bart"):
        x["decoder_input_ids"] = x["input_ids"][:, :4]
    if with_labels:
        x["labels"] = rng.integers(0, 3, 2) if task == "sequence-classification" else x["input_ids"]
    with torch.no_grad():
        want = hf(**{k: torch.from_numpy(v) for k, v in x.items()}, **extra,
                  **({"use_cache": False} if task in ("causal-lm", "seq2seq-lm") or cls == "BartModel" else {}))
    got = model(**x, **extra)
    assert list(got) == list(want.keys())
    assert len(got.to_tuple()) == len(want.to_tuple())
    for i in range(len(want.to_tuple())):
        if isinstance(want[i], tuple):  # hidden_states
            assert len(got[i]) == len(want[i])
            for a, b in zip(got[i], want[i]):
                np.testing.assert_allclose(a, b.numpy(), atol=1e-4, rtol=0)
        else:
            np.testing.assert_allclose(got[i], want[i].numpy(), atol=1e-4, rtol=0)
    assert got[-1] is got.to_tuple()[-1] and got[:2] == got.to_tuple()[:2]
    if with_labels:
        assert next(iter(got)) == "loss"


# -- tokenizers: chat templates, special-token setters, sides, BatchEncoding ----------------------
LLAMA_CHAT = ("{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
              "{% set messages = messages[1:] %}{% endif %}"
              "{% for message in messages %}"
              "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
              "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
              "{% if loop.index0 == 0 and system is defined %}{% set content = '<<SYS>>\\n' + system + "
              "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}"
              "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}"
              "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}"
              "{% endfor %}")
CHATML = """{%- for message in messages %}
    {%- if loop.first and message['role'] != 'system' %}
{{- '<|im_start|>system\\n' + (system_prompt | default('You are helpful.')) + '<|im_end|>\\n' }}
    {%- endif %}
<|im_start|>{{ message['role'] }}
{% if message['role'] == 'tool' %}{{ message['content'] | tojson }}{% else %}{{ message['content'] }}{% endif %}<|im_end|>
{% endfor %}
{% if tools %}
<|im_start|>tools
{{ tools | tojson }}<|im_end|>
{% endif %}
    {% if add_generation_prompt %}
<|im_start|>assistant
    {% endif %}
{{- '' if strftime_now('%Y') | length == 4 else raise_exception('strftime_now') }}"""
CHATS = [
    [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi, friend."},
     {"role": "user", "content": "Café? 我爱北京"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"},
     {"role": "assistant", "content": "Rayleigh scattering.", "tool_calls": None}],
]
TOOLS = [{"type": "function", "function": {"name": "weather", "description": "Météo", "parameters": {}}}]


@pytest.fixture(scope="module")
def chat_dirs(tokenizer_dirs, tmp_path_factory):  # noqa: F811
    """{"llama": the Llama tokenizer with its template in tokenizer_config.json, "chatml": Qwen2's with
    chat_template.jinja}."""
    llama = tmp_path_factory.mktemp("chat-llama")
    shutil.copytree(tokenizer_dirs["llama"], llama, dirs_exist_ok=True)
    config = json.loads((llama / "tokenizer_config.json").read_text())
    (llama / "tokenizer_config.json").write_text(json.dumps({**config, "chat_template": LLAMA_CHAT}))
    chatml = tmp_path_factory.mktemp("chat-chatml")
    shutil.copytree(tokenizer_dirs["qwen2"], chatml, dirs_exist_ok=True)
    (chatml / "chat_template.jinja").write_text(CHATML)
    return {"llama": llama, "chatml": chatml}


def same_encoding(mine, ref):
    assert list(mine) == list(ref)
    for key in ref:
        np.testing.assert_array_equal(np.asarray(mine[key]), np.asarray(ref[key]), err_msg=key)


@pytest.mark.parametrize("style", ["llama", "chatml"])
def test_chat_template(chat_dirs, style):
    path = chat_dirs[style]
    mine, ref = isoform.Tokenizer.load(path), transformers.AutoTokenizer.from_pretrained(path)
    if ref.pad_token is None:
        mine.pad_token = ref.pad_token = ref.eos_token
    assert mine.chat_template == ref.chat_template
    for chat in CHATS:
        for generation_prompt in (False, True):
            options = dict(add_generation_prompt=generation_prompt)
            text = ref.apply_chat_template(chat, tokenize=False, **options)
            assert mine.apply_chat_template(chat, tokenize=False, **options) == text
            same_encoding(mine.apply_chat_template(chat, **options), ref.apply_chat_template(chat, **options))
            assert mine.apply_chat_template(chat, return_dict=False, **options) == \
                ref.apply_chat_template(chat, return_dict=False, **options)
    batch = dict(padding=True, return_tensors="np")
    same_encoding(mine.apply_chat_template(CHATS, **batch), ref.apply_chat_template(CHATS, **batch))
    assert mine.apply_chat_template(CHATS, tokenize=False) == ref.apply_chat_template(CHATS, tokenize=False)
    truncated = dict(truncation=True, max_length=12)
    same_encoding(mine.apply_chat_template(CHATS[0], **truncated), ref.apply_chat_template(CHATS[0], **truncated))
    if style == "chatml":  # continue_final_message, tools (tojson keeps non-ASCII), template variables
        for options in (dict(continue_final_message=True), dict(tools=TOOLS), dict(system_prompt="Tu es là.")):
            assert mine.apply_chat_template(CHATS[1], tokenize=False, **options) == \
                ref.apply_chat_template(CHATS[1], tokenize=False, **options)
        assert "Météo" in mine.apply_chat_template(CHATS[0], tools=TOOLS, tokenize=False)
    else:  # raise_exception: the template's message, as a TokenizerError
        bad = [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        with pytest.raises(Exception, match="must alternate"):
            ref.apply_chat_template(bad)
        with pytest.raises(TokenizerError, match="must alternate"):
            mine.apply_chat_template(bad)


def test_chat_template_saved_and_missing(chat_dirs, tokenizer_dirs, tmp_path):  # noqa: F811
    mine = isoform.Tokenizer.load(chat_dirs["chatml"])
    mine.save(tmp_path / "out")
    ref = transformers.AutoTokenizer.from_pretrained(tmp_path / "out")
    assert ref.chat_template == CHATML
    assert ref.apply_chat_template(CHATS[0], tokenize=False) == mine.apply_chat_template(CHATS[0], tokenize=False)
    plain = isoform.Tokenizer.load(tokenizer_dirs["gpt2"])
    with pytest.raises(TokenizerError, match="no chat template"):
        plain.apply_chat_template(CHATS[0])
    text = plain.apply_chat_template(CHATS[0], chat_template=LLAMA_CHAT, tokenize=False)
    ref = transformers.AutoTokenizer.from_pretrained(tokenizer_dirs["gpt2"])
    assert text == ref.apply_chat_template(CHATS[0], chat_template=LLAMA_CHAT, tokenize=False)
    with pytest.raises(TokenizerError, match="does not parse"):
        plain.apply_chat_template(CHATS[0], chat_template="{% for m in messages %}")
    with pytest.raises(TokenizerError, match="not implemented"):
        mine.apply_chat_template(CHATS[0], return_assistant_tokens_mask=True)


def test_special_token_setters(tokenizer_dirs, chat_dirs):  # noqa: F811
    """Setting a special token takes effect for padding and in chat templates, as in transformers; a token
    that is not in the vocabulary is refused (transformers stores it and pads with the unk id or 0)."""
    mine = isoform.Tokenizer.load(tokenizer_dirs["gpt2"])
    ref = transformers.AutoTokenizer.from_pretrained(tokenizer_dirs["gpt2"])
    assert mine.pad_token is None and ref.pad_token is None
    mine.pad_token = mine.eos_token
    ref.pad_token = ref.eos_token
    texts = ["a", "hello world, again"]
    same_encoding(mine(texts, padding=True), ref(texts, padding=True))
    second = ref.convert_ids_to_tokens(5)
    mine.pad_token_id = ref.pad_token_id = 5
    assert mine.pad_token == ref.pad_token == second and mine.pad_token_id == 5
    same_encoding(mine(texts, padding=True), ref(texts, padding=True))
    with pytest.raises(TokenizerError, match="not in the vocabulary"):
        mine.pad_token = "<not-a-token>"
    assert mine.pad_token == second  # unchanged
    llama_mine, llama_ref = isoform.Tokenizer.load(chat_dirs["llama"]), transformers.AutoTokenizer.from_pretrained(
        chat_dirs["llama"])
    for key in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"):
        assert getattr(llama_mine, key) == getattr(llama_ref, key)
        assert getattr(llama_mine, key + "_id") == getattr(llama_ref, key + "_id")
    llama_mine.eos_token = llama_ref.eos_token = llama_ref.unk_token
    assert llama_mine.special_tokens_map == llama_ref.special_tokens_map
    assert llama_mine.apply_chat_template(CHATS[0], tokenize=False) == llama_ref.apply_chat_template(
        CHATS[0], tokenize=False)
    assert llama_mine.eos_token_id == llama_ref.eos_token_id == llama_ref.unk_token_id


def test_padding_and_truncation_sides(tokenizer_dirs):  # noqa: F811
    mine, ref = isoform.Tokenizer.load(tokenizer_dirs["wordpiece"]), transformers.AutoTokenizer.from_pretrained(
        tokenizer_dirs["wordpiece"])
    texts = ["a b", "the quick brown fox jumps over the lazy dog"]
    for side in ("left", "right"):
        same_encoding(mine(texts, padding=True, padding_side=side), ref(texts, padding=True, padding_side=side))
        mine.padding_side = ref.padding_side = side
        mine.truncation_side = ref.truncation_side = side
        for options in (dict(padding=True), dict(truncation=True, max_length=5, padding="max_length")):
            same_encoding(mine(texts, **options), ref(texts, **options))
    with pytest.raises(TokenizerError, match="padding_side"):
        mine(texts, padding=True, padding_side="middle")


def test_batch_encoding_tensors(tokenizer_dirs):  # noqa: F811
    mine, ref = isoform.Tokenizer.load(tokenizer_dirs["wordpiece"]), transformers.AutoTokenizer.from_pretrained(
        tokenizer_dirs["wordpiece"])
    texts = ["a b", "the quick brown fox"]
    enc = mine(texts, padding=True, return_tensors="pt")
    assert enc.to("cpu") is enc and enc.to(torch.device("cpu")) is enc
    assert all(isinstance(v, torch.Tensor) and v.device.type == "cpu" for v in enc.values())
    same_encoding({k: v.numpy() for k, v in enc.items()}, ref(texts, padding=True, return_tensors="np"))
    with pytest.raises(TokenizerError, match="torch device"):
        enc.to(3.5)
    for kind in ("pt", "np"):
        lists, theirs = mine(texts, padding=True), ref(texts, padding=True)
        assert lists.convert_to_tensors(kind) is lists
        theirs.convert_to_tensors(kind)
        assert type(lists["input_ids"]) is type(theirs["input_ids"])
        same_encoding(lists, theirs)
    one, theirs = mine("a b"), ref("a b")
    one.convert_to_tensors("np", prepend_batch_axis=True)
    theirs.convert_to_tensors("np", prepend_batch_axis=True)
    same_encoding(one, theirs)
    assert one["input_ids"].shape == (1, len(ref("a b")["input_ids"]))
