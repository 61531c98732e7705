"""``isoform.pipeline`` against ``transformers.pipeline`` (and, for ``sentence-embedding``,
``SentenceTransformer.encode``; for question-answering and the seq2seq tasks, which transformers v5
dropped, against transformers 4.57.6's pipelines, run in a subprocess by ``legacy_transformers``) on tiny
checkpoints whose directories also hold a tokenizer; numpy and torch backends."""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
from conftest_tokenization import tokenizer_dirs  # noqa: F401  (session fixture)

import isoform
from isoform.errors import ConfigError, InputError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BACKENDS = ["numpy", "torch"]
TOL = 1e-5
BERT = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, max_position_embeddings=64)
TEXTS = ["the quick brown fox", "hello world, this is a longer sentence with more words in it", "café"]
MASKED = ["the quick [MASK] fox", "hello [MASK] world, this is a longer sentence", "[MASK] and [MASK] too"]


def hf_pipeline(task, path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.pipeline(task, model=str(path), device="cpu", **kwargs)


def with_tokenizer(tmp_path_factory, model_dir, tok_dir, name, config=None):
    """A copy of ``model_dir`` holding ``tok_dir``'s tokenizer files (``config``: config.json updates)."""
    path = tmp_path_factory.mktemp(name)
    shutil.copytree(model_dir, path, dirs_exist_ok=True)
    for f in tok_dir.iterdir():
        if f.name != "config.json":
            shutil.copy(f, path / f.name)
    if config:
        data = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**data, **config}))
    return path


def vocab_size(tok_dir):
    return len((tok_dir / "vocab.txt").read_text(encoding="utf-8").splitlines())


def close(ours, theirs, path="out"):
    """Same structure; equal ints/strings; floats within TOL."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), (path, ours, theirs)
        for k in theirs:
            close(ours[k], theirs[k], f"{path}.{k}")
    elif isinstance(theirs, list | tuple):
        assert isinstance(ours, list | tuple) and len(ours) == len(theirs), (path, ours, theirs)
        for i, (a, b) in enumerate(zip(ours, theirs)):
            close(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert isinstance(ours, float) and abs(ours - theirs) <= TOL, (path, ours, theirs)
    else:
        assert type(ours) is type(theirs) and ours == theirs, (path, ours, theirs)


@pytest.fixture(scope="module")
def bert_mlm(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    tok = tokenizer_dirs["wordpiece"]
    model_dir, _ = hf_checkpoint("BertForMaskedLM", vocab_size=vocab_size(tok), **BERT)
    return with_tokenizer(tmp_path_factory, model_dir, tok, "bert-mlm-tok")


@pytest.fixture(scope="module")
def bert_cls(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    """{variant: dir}: 3 named labels (softmax), one label (sigmoid), multi-label, regression."""
    tok = tokenizer_dirs["wordpiece"]
    n = vocab_size(tok)
    labels = {"id2label": {0: "neg", 1: "neu", 2: "pos"}, "label2id": {"neg": 0, "neu": 1, "pos": 2}}
    variants = {"softmax": dict(num_labels=3, **labels), "sigmoid": dict(num_labels=1),
                "multi": dict(num_labels=3, problem_type="multi_label_classification"),
                "regression": dict(num_labels=2, problem_type="regression")}
    out = {}
    for name, config in variants.items():
        model_dir, _ = hf_checkpoint("BertForSequenceClassification", vocab_size=n, **BERT, **config)
        out[name] = with_tokenizer(tmp_path_factory, model_dir, tok, f"bert-cls-{name}")
    return out


# -- feature-extraction ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_feature_extraction(bert_mlm, backend):
    hf = hf_pipeline("feature-extraction", bert_mlm)
    ours = isoform.pipeline("feature-extraction", model=bert_mlm, backend=backend)
    close(ours(TEXTS[1]), hf(TEXTS[1]))
    close(ours(TEXTS), hf(TEXTS))
    close(ours(TEXTS, batch_size=2), hf(TEXTS, batch_size=2))  # padded to the longest of each batch, as hf
    t = ours(TEXTS[0], return_tensors=True)
    ref = hf(TEXTS[0], return_tensors=True).numpy()
    assert isinstance(t, np.ndarray) and t.shape == ref.shape and np.abs(t - ref).max() <= TOL


# -- sentence-embedding ------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_sentence_embedding_minilm(minilm_dir, backend):
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(minilm_dir), device="cpu")
    ours = isoform.pipeline("sentence-embedding", model=minilm_dir, backend=backend)
    texts = [*TEXTS, "A man is playing a guitar.", "x " * 300]  # the last one is cut at max_seq_length 256
    got, ref = ours(texts, batch_size=2), st.encode(texts)
    assert got.shape == ref.shape and got.dtype == np.float32
    assert np.abs(got - ref).max() <= TOL
    one = ours(texts[0])
    assert one.shape == (384,) and np.abs(one - st.encode(texts[0])).max() <= TOL
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)  # the checkpoint's 2_Normalize module


POOLINGS = [("cls",), ("max",), ("mean_sqrt_len_tokens",), ("weightedmean",), ("lasttoken",), ("cls", "mean", "max")]


@pytest.fixture(scope="module")
def st_dirs(bert_mlm, tmp_path_factory):
    """{modes: dir}: the tiny BERT as a sentence-transformers checkpoint with that pooling (legacy keys for
    the single modes, the new ``pooling_mode`` list and prompts for the combination), no Normalize."""
    out = {}
    for modes in POOLINGS:
        path = tmp_path_factory.mktemp("st-" + "-".join(modes))
        shutil.copytree(bert_mlm, path, dirs_exist_ok=True)
        (path / "1_Pooling").mkdir()
        if len(modes) == 1:
            keys = {"pooling_mode_cls_token": "cls", "pooling_mode_max_tokens": "max",
                    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
                    "pooling_mode_weightedmean_tokens": "weightedmean", "pooling_mode_lasttoken": "lasttoken"}
            pooling = {"word_embedding_dimension": 32, **{k: v == modes[0] for k, v in keys.items()},
                       "pooling_mode_mean_tokens": False}
        else:  # and prompts, the default one prefixing every text
            pooling = {"embedding_dimension": 32, "pooling_mode": list(modes)}
            prompts = {"prompts": {"query": "query: ", "doc": "passage: "}, "default_prompt_name": "query"}
            (path / "config_sentence_transformers.json").write_text(json.dumps(prompts))
        (path / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
        (path / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
        (path / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12, "do_lower_case": False}))
        out[modes] = path
    return out


@pytest.mark.parametrize("modes", POOLINGS, ids="-".join)
@pytest.mark.parametrize("backend", BACKENDS)
def test_sentence_embedding_pooling_modes(st_dirs, modes, backend):
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(st_dirs[modes]), device="cpu")
    ours = isoform.pipeline("sentence-embedding", model=st_dirs[modes], backend=backend)
    got, ref = ours(TEXTS, batch_size=2), st.encode(TEXTS)  # TEXTS[1] is cut at max_seq_length 12
    assert got.shape == ref.shape and np.abs(got - ref).max() <= TOL
    normed = ours(TEXTS, normalize_embeddings=True)
    assert np.abs(normed - st.encode(TEXTS, normalize_embeddings=True)).max() <= TOL
    if len(modes) > 1:
        assert np.abs(ours(TEXTS, prompt_name="doc") - st.encode(TEXTS, prompt_name="doc")).max() <= TOL
        assert np.abs(ours(TEXTS, prompt="x: ") - st.encode(TEXTS, prompt="x: ")).max() <= TOL
        assert np.abs(ours(TEXTS, prompt="") - ours(TEXTS)).max() > 1e-3  # the default prompt is in use


def test_sentence_embedding_refuses_unknown_modules(st_dirs, tmp_path):
    path = tmp_path / "dense"
    shutil.copytree(st_dirs[("cls",)], path)
    modules = json.loads((path / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (path / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ConfigError, match="Dense"):
        isoform.pipeline("sentence-embedding", model=path)


# -- fill-mask ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_fill_mask(bert_mlm, backend):
    hf = hf_pipeline("fill-mask", bert_mlm)
    ours = isoform.pipeline("fill-mask", model=bert_mlm, backend=backend)
    close(ours(MASKED[0]), hf(MASKED[0]))
    close(ours(MASKED[2]), hf(MASKED[2]))  # two masks: one list per mask
    close(ours(MASKED, batch_size=2), hf(MASKED, batch_size=2))
    close(ours([MASKED[1]]), hf([MASKED[1]]))
    close(ours(MASKED[0], top_k=2), hf(MASKED[0], top_k=2))
    targets = ["quick", "fox", "the", "brownish"]  # "brownish" is not a token: its first piece stands in
    close(ours(MASKED[:2], targets=targets, top_k=3), hf(MASKED[:2], targets=targets, top_k=3))
    with pytest.raises(InputError, match="mask_token"):
        ours("no mask here")


@pytest.fixture(scope="module")
def roberta_mlm(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    tok = tokenizer_dirs["roberta"]
    n = len(json.loads((tok / "vocab.json").read_text(encoding="utf-8")))
    model_dir, _ = hf_checkpoint("RobertaForMaskedLM", vocab_size=n, **{**BERT, "max_position_embeddings": 66},
                                 pad_token_id=1, bos_token_id=0, eos_token_id=2)
    return with_tokenizer(tmp_path_factory, model_dir, tok, "roberta-mlm-tok")


def test_fill_mask_byte_level_bpe(roberta_mlm):
    """RoBERTa's <mask> and byte-level tokens (token_str with its leading space)."""
    hf = hf_pipeline("fill-mask", roberta_mlm)
    ours = isoform.pipeline("fill-mask", model=roberta_mlm)
    texts = [t.replace("[MASK]", "<mask>") for t in MASKED]
    close(ours(texts, batch_size=2, top_k=4), hf(texts, batch_size=2, top_k=4))
    close(ours(texts[0], targets=[" quick", "fox"]), hf(texts[0], targets=[" quick", "fox"]))


# -- text-classification -----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["softmax", "sigmoid", "multi", "regression"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_text_classification(bert_cls, variant, backend):
    path = bert_cls[variant]
    hf = hf_pipeline("text-classification", path)
    ours = isoform.pipeline("text-classification", model=path, backend=backend)
    close(ours(TEXTS[0]), hf(TEXTS[0]))
    close(ours(TEXTS, batch_size=2), hf(TEXTS, batch_size=2))
    for options in ({"top_k": None}, {"top_k": 2}, {"top_k": 1}, {"function_to_apply": "none"},
                    {"function_to_apply": "sigmoid", "top_k": None}, {"function_to_apply": "softmax"}):
        close(ours(TEXTS[0], **options), hf(TEXTS[0], **options))
        close(ours(TEXTS, **options), hf(TEXTS, **options))
    pair = {"text": TEXTS[0], "text_pair": TEXTS[2]}
    close(ours(pair), hf(pair))
    close(ours([pair, pair], top_k=None), hf([pair, pair], top_k=None))
    with pytest.raises(InputError, match="text_pair"):
        ours([[TEXTS[1], TEXTS[0]]])  # transformers refuses this too
    close(ours([TEXTS[0], pair], top_k=2), hf([TEXTS[0], pair], top_k=2))  # a text and a pair in one batch


def test_sentiment_analysis_alias_and_call_defaults(bert_cls):
    hf = hf_pipeline("sentiment-analysis", bert_cls["softmax"], top_k=2)
    ours = isoform.pipeline("sentiment-analysis", model=bert_cls["softmax"], top_k=2)
    close(ours(TEXTS), hf(TEXTS))
    close(ours(TEXTS[0]), hf(TEXTS[0]))  # nested: top_k came at creation, not with the call
    close(ours(TEXTS[0], top_k=1), hf(TEXTS[0], top_k=1))
    with pytest.raises(ConfigError, match="unknown pipeline task"):
        isoform.pipeline("token-clasification", model=bert_cls["softmax"])


def test_pipeline_on_a_loaded_model(bert_cls):
    path = bert_cls["softmax"]
    model = isoform.Model.load(path, backend="torch", task="sequence-classification")
    ours = isoform.pipeline("text-classification", model=model, tokenizer=isoform.Tokenizer.load(path))
    close(ours(TEXTS), hf_pipeline("text-classification", path)(TEXTS))
    with pytest.raises(ConfigError, match="tokenizer="):
        isoform.pipeline("text-classification", model=model)
    with pytest.raises(ConfigError, match="task='masked-lm'"):
        isoform.pipeline("fill-mask", model=model, tokenizer=path)


# -- text-generation ---------------------------------------------------------------------------------
LM_TEXT = ["the cat sat on the mat", "a dog ran in the fog", "stop and go, then stop again", "one two three four",
           "abcdef"] * 20  # stop strings decode every token after "abcdef" (transformers and isoform)
PROMPTS = ["the dog sat", "a cat ran in the", "one"]


@pytest.fixture(scope="module")
def gpt2(tmp_path_factory):
    """GPT-2 sized to a Metaspace BPE tokenizer with pad and eos tokens (random weights)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(LM_TEXT, trainers.BpeTrainer(vocab_size=80, special_tokens=["<pad>", "<eos>", "<unk>"]))
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                                  unk_token="<unk>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(hf_tok), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     pad_token_id=0, bos_token_id=1, eos_token_id=1)
    path = tmp_path_factory.mktemp("gpt2-pipeline")
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_text_generation(gpt2, backend):
    hf = hf_pipeline("text-generation", gpt2)
    ours = isoform.pipeline("text-generation", model=gpt2, backend=backend)
    greedy = dict(do_sample=False, max_new_tokens=8)
    close(ours(PROMPTS[0], **greedy), hf(PROMPTS[0], **greedy))
    close(ours(PROMPTS, **greedy), hf(PROMPTS, **greedy))
    close(ours(PROMPTS, batch_size=2, **greedy), hf(PROMPTS, batch_size=2, **greedy))  # left-padded batches
    close(ours(PROMPTS[1], return_full_text=False, **greedy), hf(PROMPTS[1], return_full_text=False, **greedy))
    close(ours(PROMPTS[0], return_tensors=True, **greedy), hf(PROMPTS[0], return_tensors=True, **greedy))
    beams = dict(do_sample=False, max_new_tokens=6, num_beams=3, num_return_sequences=2)
    close(ours(PROMPTS[:2], **beams), hf(PROMPTS[:2], **beams))
    options = dict(do_sample=False, max_new_tokens=7, repetition_penalty=1.5, no_repeat_ngram_size=2, min_new_tokens=3)
    close(ours(PROMPTS[0], **options), hf(PROMPTS[0], **options))
    close(ours(PROMPTS[2], prefix="the cat ", **greedy), hf(PROMPTS[2], prefix="the cat ", **greedy))
    stopped = hf(PROMPTS[1], stop_sequence="the", **greedy)
    assert len(stopped[0]["generated_text"]) < len(hf(PROMPTS[1], **greedy)[0]["generated_text"])  # it stopped
    close(ours(PROMPTS[1], stop_sequence="the", **greedy), stopped)
    close(ours(PROMPTS[1], max_length=6, do_sample=False), hf(PROMPTS[1], max_length=6, do_sample=False))


def test_text_generation_defaults_and_errors(gpt2):
    ours = isoform.pipeline("text-generation", model=gpt2, do_sample=False, max_new_tokens=5)
    hf = hf_pipeline("text-generation", gpt2, do_sample=False, max_new_tokens=5)
    close(ours(PROMPTS[0]), hf(PROMPTS[0]))  # pipeline-level defaults
    sampled = isoform.pipeline("text-generation", model=gpt2)(PROMPTS[0], max_new_tokens=4, seed=0)
    assert sampled[0]["generated_text"].startswith(PROMPTS[0])  # transformers' default: sampling
    with pytest.raises(InputError, match="chat"):
        ours([{"role": "user", "content": "hi"}])


# -- text2text-generation / summarization / translation ----------------------------------------------
S2S_TEXT = ["translate English to German: hello world", "the cat sat on the mat", "a dog ran in the fog",
            "summarize: one two three four five six", "Das Haus ist blau und der Hund schläft."] * 40
S2S_INPUTS = ["hello world", "the cat sat on the mat and the dog ran", "one two"]
GREEDY = dict(max_new_tokens=6, do_sample=False, num_beams=1)  # the pipelines' default: 4 beams
BEAMS = dict(max_new_tokens=5, num_beams=3, num_return_sequences=2, do_sample=False)
MBART_OPTIONS = dict(src_lang="de_DE", tgt_lang="fr_XX", return_tensors=True, max_new_tokens=5, do_sample=False,
                     num_beams=2)
S2S_CASES = {  # name: (checkpoint fixture, task, args, kwargs), run by isoform and by transformers 4.57.6
    "t2t-one": ("t5", "text2text-generation", [S2S_INPUTS[0]], GREEDY),
    "t2t-batch": ("t5", "text2text-generation", [S2S_INPUTS], dict(batch_size=2, **GREEDY)),
    "t2t-beam": ("t5", "text2text-generation", [[S2S_INPUTS[1]]], BEAMS),
    "t2t-ids": ("t5", "text2text-generation", [S2S_INPUTS[0]], dict(return_tensors=True, **GREEDY)),
    "summary": ("t5", "summarization", [S2S_INPUTS[1]], GREEDY),  # task_specific_params' prefix
    "summary-defaults": ("t5", "summarization", [S2S_INPUTS[1]], dict(max_new_tokens=6)),
    "summary-beam": ("t5", "summarization", [S2S_INPUTS], dict(batch_size=2, **BEAMS)),
    "translation": ("t5", "translation", [S2S_INPUTS[:2]], GREEDY),
    "translation-en-de": ("t5", "translation_en_to_de", [S2S_INPUTS[0]], GREEDY),
    "translation-langs": ("mbart", "translation", [S2S_INPUTS[:2]], MBART_OPTIONS),
}


def leaves(x):
    """The scalars of nested lists and dicts."""
    if isinstance(x, dict | list):
        for v in x.values() if isinstance(x, dict) else x:
            yield from leaves(v)
    else:
        yield x


@pytest.fixture(scope="module")
def t5(tmp_path_factory):
    """A random T5 with a SentencePiece tokenizer, ``task_specific_params`` giving summarization and
    translation_en_to_de a prefix."""
    import sentencepiece as spm

    path = tmp_path_factory.mktemp("t5-pipeline")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(S2S_TEXT), model_prefix=str(path / "spm"), vocab_size=80, model_type="unigram",
        hard_vocab_limit=False, minloglevel=2, num_threads=1, pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
    )  # fmt: skip
    (path / "spm.model").rename(path / "spiece.model")
    (path / "spm.vocab").unlink()
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "T5Tokenizer", "extra_ids": 8}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    config = transformers.T5Config(vocab_size=len(tok), d_model=32, d_kv=8, d_ff=48, num_layers=2, num_heads=4,
                                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=1,
                                   task_specific_params={"summarization": {"prefix": "summarize: "},
                                                         "translation_en_to_de": {"prefix": "translate English to German: "}})
    transformers.T5ForConditionalGeneration(config).eval().save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def mbart(tmp_path_factory):
    """A random mBART with its SentencePiece tokenizer."""
    import sentencepiece as spm

    path = tmp_path_factory.mktemp("mbart-pipeline")
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(S2S_TEXT), model_prefix=str(path / "spm"), vocab_size=70, model_type="unigram",
        hard_vocab_limit=False, minloglevel=2, num_threads=1,
    )  # fmt: skip
    (path / "spm.model").rename(path / "sentencepiece.bpe.model")
    (path / "spm.vocab").unlink()
    (path / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "MBartTokenizer", "src_lang": "en_XX"}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tok = transformers.AutoTokenizer.from_pretrained(str(path))
    torch.manual_seed(0)
    config = transformers.MBartConfig(
        vocab_size=len(tok), d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=48, decoder_ffn_dim=48, max_position_embeddings=64,
        pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2,
    )  # fmt: skip
    transformers.MBartForConditionalGeneration(config).eval().save_pretrained(path)
    return path


@pytest.mark.parametrize("case", list(S2S_CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_seq2seq_pipelines_match_transformers_v4(legacy, t5, mbart, case, backend):
    """text2text-generation, summarization, translation (greedy and beam, batched): v4's outputs."""
    checkpoint, task, args, kwargs = S2S_CASES[case]
    want = legacy[case]
    texts = [v for v in leaves(want) if isinstance(v, str)]
    assert not texts or any(t.strip() for t in texts), "random weights generated only special tokens: vacuous"
    ours = isoform.pipeline(task, model={"t5": t5, "mbart": mbart}[checkpoint], backend=backend)
    assert ours(*args, **kwargs) == want


def test_seq2seq_cases_are_not_vacuous(legacy, mbart):
    assert legacy["summary-defaults"] != legacy["summary"]  # the pipelines' 4 beams are not greedy here
    assert legacy["translation"] != legacy["t2t-batch"][:2]  # plain translation took translation_en_to_de's prefix
    fr = isoform.Tokenizer.load(mbart).convert_tokens_to_ids("fr_XX")
    assert all(r["translation_token_ids"][1] == fr for r in legacy["translation-langs"])  # tgt_lang forced first


def test_text_generation_reads_the_generation_config(gpt2, tmp_path):
    """The checkpoint's generation_config.json sets what the pipeline's defaults (256 new tokens) would."""
    path = tmp_path / "gpt2-gen"
    shutil.copytree(gpt2, path)
    config = json.loads((path / "generation_config.json").read_text())
    (path / "generation_config.json").write_text(json.dumps({**config, "max_new_tokens": 5, "num_beams": 2}))
    expected = hf_pipeline("text-generation", path)(PROMPTS, do_sample=False, return_tensors=True)
    got = isoform.pipeline("text-generation", model=path)(PROMPTS, do_sample=False, return_tensors=True)
    close(got, expected)
    assert all(len(r[0]["generated_token_ids"]) <= 5 + 6 for r in got)


# -- token-classification ----------------------------------------------------------------------------
NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"}
NER_TEXTS = [*TEXTS, "Ångström façade coöperate 12345 déjà vu 👍 over the lazy dog",
             "Don't stop believing! It's 3.14, isn't it?"]  # subwords, an [UNK], punctuation
STRATEGIES = ["none", "simple", "first", "average", "max"]


def plain(x):
    """transformers' results with NumPy scalars as Python ones (isoform's are Python's)."""
    if isinstance(x, dict):
        return {k: plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    return x.item() if isinstance(x, np.generic) else x


HF_RESULTS: dict = {}


def fingerprint(x):
    """A key for pipeline inputs: images and arrays by their bytes."""
    if isinstance(x, list | tuple):
        return [fingerprint(v) for v in x]
    if hasattr(x, "tobytes"):
        return (getattr(x, "size", None), hash(x.tobytes()))
    return x


def hf_run(task, path, inputs, pipeline_kwargs=None, **options):
    """transformers' pipeline result (NumPy scalars as Python's), computed once for these arguments: the
    backends' tests share it. ``pipeline_kwargs``: for ``transformers.pipeline`` (an image processor)."""
    key = (task, str(path), repr(fingerprint(inputs)), repr(sorted(options.items())))
    if key not in HF_RESULTS:
        pipe = HF_RESULTS.get((task, str(path)))
        if pipe is None:
            pipe = HF_RESULTS[(task, str(path))] = hf_pipeline(task, path, **(pipeline_kwargs or {}))
        HF_RESULTS[key] = plain(pipe(inputs, **options))
    return HF_RESULTS[key]


def ner_checkpoint(hf_checkpoint, tmp_path_factory, tok_dir, cls, name, **config):
    model_dir, _ = hf_checkpoint(cls, id2label=NER_LABELS, label2id={v: k for k, v in NER_LABELS.items()}, **config)
    return with_tokenizer(tmp_path_factory, model_dir, tok_dir, name)


@pytest.fixture(scope="module")
def bert_ner(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    tok = tokenizer_dirs["wordpiece"]
    return ner_checkpoint(hf_checkpoint, tmp_path_factory, tok, "BertForTokenClassification", "bert-ner",
                          vocab_size=vocab_size(tok), **BERT)


@pytest.mark.parametrize("backend", BACKENDS)
def test_token_classification(bert_ner, backend):
    ours = isoform.pipeline("ner", model=bert_ner, backend=backend)
    for strategy in STRATEGIES:
        want = hf_run("ner", bert_ner, NER_TEXTS, aggregation_strategy=strategy, batch_size=2)
        assert sum(map(len, want)) > 5, "no entities: the comparison is vacuous"
        close(ours(NER_TEXTS, aggregation_strategy=strategy, batch_size=2), want)
    close(ours(NER_TEXTS[3], aggregation_strategy="first"), hf_run("ner", bert_ner, NER_TEXTS[3], aggregation_strategy="first"))
    close(ours(NER_TEXTS[:2], ignore_labels=[]), hf_run("ner", bert_ner, NER_TEXTS[:2], ignore_labels=[]))
    options = dict(aggregation_strategy="simple", ignore_labels=["O", "PER"])
    close(ours(NER_TEXTS, **options), hf_run("ner", bert_ner, NER_TEXTS, **options))
    with pytest.raises(InputError, match="aggregation_strategy"):
        ours(TEXTS[0], aggregation_strategy="longest")


def test_token_classification_long_text_in_windows(bert_ner):
    """``stride``: a text over model_max_length (64) runs in overlapping windows, their entities merged."""
    text = " ".join(NER_TEXTS * 3)
    hf, ours = hf_pipeline("ner", bert_ner), isoform.pipeline("ner", model=bert_ner)
    for strategy in ("simple", "max"):
        want = plain(hf(text, stride=16, aggregation_strategy=strategy))
        assert want and want[-1]["end"] > len(text) // 2  # entities from the later windows
        close(ours(text, stride=16, aggregation_strategy=strategy), want)
    with pytest.raises(InputError, match="aggregation_strategy"):
        ours(text, stride=16)


def test_token_classification_byte_level_bpe(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    """RoBERTa's BPE has no subword prefix: words are told apart by the space before them, as transformers."""
    tok = tokenizer_dirs["roberta"]
    n = len(json.loads((tok / "vocab.json").read_text(encoding="utf-8")))
    path = ner_checkpoint(hf_checkpoint, tmp_path_factory, tok, "RobertaForTokenClassification", "roberta-ner",
                          vocab_size=n, **{**BERT, "max_position_embeddings": 66}, pad_token_id=1, bos_token_id=0,
                          eos_token_id=2)
    hf, ours = hf_pipeline("ner", path), isoform.pipeline("ner", model=path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # transformers warns of its fallback heuristic
        for strategy in ("simple", "first", "average"):  # the word heuristic matters from "first" on
            close(ours(NER_TEXTS, aggregation_strategy=strategy), plain(hf(NER_TEXTS, aggregation_strategy=strategy)))


# -- question-answering ------------------------------------------------------------------------------
CONTEXT = ("The quick brown fox jumps over the lazy dog. Café naïve résumé über Ångström façade coöperate déjà vu. "
           "Transformers run on many backends: PyTorch, JAX, TensorFlow and ONNX.")
LONG_CONTEXT = " ".join([CONTEXT, "Tokenization splits words into subwords, pieces and bytes."] * 3
                        + ["Only the last window holds this sentence."])  # repeated answers merge: one is unique
QUESTIONS = ["what runs on many backends?", "who jumps over the dog?", "where is the café?"]
SUBWORDS = "Foxes jumping quickly overjumped lazydogs and brownfoxes."  # words of several tokens
WINDOWS = dict(max_seq_len=32, doc_stride=8)
QA_CASES = {  # name: (args, kwargs), run by isoform and by transformers 4.57.6
    "one": ([], dict(question=QUESTIONS[0], context=CONTEXT)),
    "dict": ([{"question": QUESTIONS[0], "context": CONTEXT}], {}),
    "one-dict-list": ([[{"question": QUESTIONS[0], "context": CONTEXT}]], {}),  # answers as one example
    "batch": ([], dict(question=QUESTIONS, context=CONTEXT, batch_size=2)),
    "dict-batch": ([[{"question": q, "context": CONTEXT} for q in QUESTIONS]], dict(top_k=2)),
    "top3": ([], dict(question=QUESTIONS[1], context=CONTEXT, top_k=3)),
    "impossible": ([], dict(question=QUESTIONS[2], context=CONTEXT, top_k=12, max_answer_len=1,
                            handle_impossible_answer=True)),  # the null answer ranks 10th
    "impossible-top1": ([], dict(question=QUESTIONS[0], context=CONTEXT, handle_impossible_answer=True)),
    "subwords": ([], dict(question=QUESTIONS[1], context=SUBWORDS, top_k=5)),
    "unaligned": ([], dict(question=QUESTIONS[1], context=SUBWORDS, top_k=5, align_to_words=False)),
    "long": ([], dict(question=QUESTIONS[0], context=LONG_CONTEXT)),
    "long-top2": ([], dict(question=QUESTIONS[0], context=LONG_CONTEXT, top_k=2)),
    "windows": ([], dict(question=QUESTIONS[0], context=LONG_CONTEXT, top_k=4, **WINDOWS)),
    "windows-top20": ([], dict(question=QUESTIONS[0], context=LONG_CONTEXT, top_k=20, **WINDOWS)),
    "windows-batch": ([], dict(question=QUESTIONS, context=LONG_CONTEXT, batch_size=2, top_k=3,
                               handle_impossible_answer=True, **WINDOWS)),
}

LEGACY_PIPELINES = """
pipes, result = {}, {}
for name, (task, model, args, kwargs) in payload.items():
    if (task, model) not in pipes:
        pipes[task, model] = transformers.pipeline(task, model=model, tokenizer=model, device="cpu")
    result[name] = pipes[task, model](*args, **kwargs)
"""


@pytest.fixture(scope="module")
def legacy(bert_qa, t5, mbart):
    """{case: transformers 4.57.6's pipeline result} for QA_CASES and S2S_CASES, from one subprocess."""
    from legacy_transformers import run_legacy

    paths = {"t5": str(t5), "mbart": str(mbart)}
    payload = {name: ("question-answering", str(bert_qa), args, kwargs) for name, (args, kwargs) in QA_CASES.items()}
    payload.update({name: (task, paths[checkpoint], args, kwargs)
                    for name, (checkpoint, task, args, kwargs) in S2S_CASES.items()})
    return run_legacy(LEGACY_PIPELINES, payload)


@pytest.fixture(scope="module")
def bert_qa(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    tok = tokenizer_dirs["wordpiece"]
    model_dir, _ = hf_checkpoint("BertForQuestionAnswering", vocab_size=vocab_size(tok), **BERT)
    return with_tokenizer(tmp_path_factory, model_dir, tok, "bert-qa")


@pytest.mark.parametrize("case", list(QA_CASES))
@pytest.mark.parametrize("backend", BACKENDS)
def test_question_answering_matches_transformers_v4(bert_qa, legacy, case, backend):
    """Answers (score within TOL, start, end, text) as v4's question-answering pipeline (v5 has none)."""
    args, kwargs = QA_CASES[case]
    qa = isoform.pipeline("question-answering", model=bert_qa, backend=backend)
    close(qa(*args, **kwargs), legacy[case])


def test_question_answering_cases_are_not_vacuous(legacy):
    """The v4 answers exercise what the cases are for: the null answer, the later windows, unaligned spans."""
    assert any(a["answer"] == "" for a in legacy["impossible"])
    assert max(a["start"] for a in legacy["windows-top20"]) > len(LONG_CONTEXT) // 2
    assert legacy["unaligned"] != legacy["subwords"]


def test_question_answering_errors(bert_qa):
    qa = isoform.pipeline("question-answering", model=bert_qa)
    for bad, pattern in ((dict(top_k=0), "top_k"), (dict(max_answer_len=0), "max_answer_len"),
                         (dict(max_seq_len=16, doc_stride=20), "doc_stride")):
        with pytest.raises(InputError, match=pattern):
            qa(question=QUESTIONS[0], context=CONTEXT, **bad)
    with pytest.raises(InputError, match="context cannot be empty"):
        qa(question=QUESTIONS[0], context="")
    with pytest.raises(InputError, match="question="):
        qa(question=QUESTIONS[0])


# -- zero-shot-classification ------------------------------------------------------------------------
CANDIDATES = ["sports", "politics", "cooking and food"]


@pytest.fixture(scope="module")
def bert_nli(hf_checkpoint, tokenizer_dirs, tmp_path_factory):  # noqa: F811
    """An NLI head whose entailment class is neither the first nor the last (upper-case names)."""
    tok = tokenizer_dirs["wordpiece"]
    labels = {0: "CONTRADICTION", 1: "ENTAILMENT", 2: "NEUTRAL"}
    model_dir, _ = hf_checkpoint("BertForSequenceClassification", vocab_size=vocab_size(tok), **BERT, id2label=labels,
                                 label2id={v: k for k, v in labels.items()})
    return with_tokenizer(tmp_path_factory, model_dir, tok, "bert-nli")


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_shot_classification(bert_nli, backend):
    ours = isoform.pipeline("zero-shot-classification", model=bert_nli, backend=backend)
    task = "zero-shot-classification"
    close(ours(TEXTS[0], candidate_labels=CANDIDATES), hf_run(task, bert_nli, TEXTS[0], candidate_labels=CANDIDATES))
    close(ours(TEXTS, CANDIDATES, batch_size=2), hf_run(task, bert_nli, TEXTS, candidate_labels=CANDIDATES, batch_size=2))
    close(ours(TEXTS, candidate_labels=CANDIDATES, multi_label=True),
          hf_run(task, bert_nli, TEXTS, candidate_labels=CANDIDATES, multi_label=True))
    close(ours(TEXTS[1], candidate_labels="sports"), hf_run(task, bert_nli, TEXTS[1], candidate_labels="sports"))  # one label
    options = dict(candidate_labels="sports, politics", hypothesis_template="It is about {}.")
    close(ours(TEXTS[:2], **options), hf_run(task, bert_nli, TEXTS[:2], **options))
    assert ours.entailment_id() == 1
    with pytest.raises(InputError, match="hypothesis_template"):
        ours(TEXTS[0], candidate_labels=CANDIDATES, hypothesis_template="no slot")
    with pytest.raises(InputError, match="candidate_labels"):
        ours(TEXTS[0], candidate_labels=[])


# -- image-classification / zero-shot-image-classification -------------------------------------------
def images(n, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (30 + 3 * i, 40 - 2 * i, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def vit_cls(hf_checkpoint):
    """{cls: dir} for ViT and DeiT classifiers (7 named labels) with a ViT image processor."""
    labels = {i: f"label {i}" for i in range(7)}
    config = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=24,
                  patch_size=4, id2label=labels, label2id={v: k for k, v in labels.items()})
    out = {}
    for cls in ("ViTForImageClassification", "DeiTForImageClassification"):
        path, _ = hf_checkpoint(cls, **config)
        transformers.ViTImageProcessorPil(size={"height": 24, "width": 24}).save_pretrained(path)
        out[cls] = path
    return out


@pytest.mark.parametrize("cls", ["ViTForImageClassification", "DeiTForImageClassification"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_image_classification(vit_cls, cls, backend, tmp_path):
    path = vit_cls[cls]
    setup = {"image_processor": transformers.ViTImageProcessorPil.from_pretrained(path)}
    ours = isoform.pipeline("image-classification", model=path, backend=backend)
    pics = images(3)
    close(ours(pics[0]), hf_run("image-classification", path, pics[0], setup))
    close(ours(pics, batch_size=2, top_k=3), hf_run("image-classification", path, pics, setup, batch_size=2, top_k=3))
    options = dict(top_k=10, function_to_apply="sigmoid")
    close(ours(pics[:2], **options), hf_run("image-classification", path, pics[:2], setup, **options))
    pics[1].save(tmp_path / "image.png")
    close(ours(str(tmp_path / "image.png")), hf_run("image-classification", path, pics[1], setup))  # a file path


@pytest.fixture(scope="module")
def clip(hf_checkpoint, tmp_path_factory):
    """CLIP sized to the CLIP tokenizer of the tokenization fixtures, with its image processor."""
    from conftest_tokenization import build_clip

    tok_dir = tmp_path_factory.mktemp("clip-tok")
    build_clip(tok_dir)
    n = len(transformers.CLIPTokenizer.from_pretrained(tok_dir))
    text = dict(vocab_size=n, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=20,
                max_position_embeddings=32, projection_dim=8, eos_token_id=n - 1)
    vision = dict(hidden_size=24, num_hidden_layers=2, num_attention_heads=3, intermediate_size=20, image_size=12,
                  patch_size=4, projection_dim=8)
    model_dir, _ = hf_checkpoint("CLIPModel", text_config=text, vision_config=vision, projection_dim=8)
    path = with_tokenizer(tmp_path_factory, model_dir, tok_dir, "clip-pipeline")
    transformers.CLIPImageProcessorPil(size={"shortest_edge": 14}, crop_size={"height": 12, "width": 12}).save_pretrained(path)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_shot_image_classification(clip, backend):
    setup = {"image_processor": transformers.CLIPImageProcessorPil.from_pretrained(clip)}
    task = "zero-shot-image-classification"
    ours = isoform.pipeline(task, model=clip, backend=backend)
    pics, labels = images(3, seed=1), ["cat", "two dogs", "a red car"]
    close(ours(pics[0], candidate_labels=labels), hf_run(task, clip, pics[0], setup, candidate_labels=labels))
    close(ours(pics, labels, batch_size=2), hf_run(task, clip, pics, setup, candidate_labels=labels, batch_size=2))
    options = dict(candidate_labels=labels[:2], hypothesis_template="a picture of {}")
    close(ours(pics[:2], **options), hf_run(task, clip, pics[:2], setup, **options))


# -- automatic-speech-recognition --------------------------------------------------------------------
def waves(n, seed=0):
    rng = np.random.default_rng(seed)
    return [(rng.normal(size=1600 + 700 * i) * 0.3).astype(np.float32) for i in range(n)]


@pytest.fixture(scope="module")
def wav2vec2_ctc(hf_checkpoint, tmp_path_factory):
    from conftest_tokenization import build_wav2vec2

    path = tmp_path_factory.mktemp("w2v-tok")
    build_wav2vec2(path)
    tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(path)
    model_dir, _ = hf_checkpoint("Wav2Vec2ForCTC", conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                                 hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                                 num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=len(tok),
                                 feat_extract_norm="layer", do_stable_layer_norm=True)
    out = with_tokenizer(tmp_path_factory, model_dir, path, "w2v-ctc")
    transformers.Wav2Vec2FeatureExtractor(return_attention_mask=True).save_pretrained(out)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_speech_recognition_ctc(wav2vec2_ctc, backend):
    task, path = "automatic-speech-recognition", wav2vec2_ctc
    ours = isoform.pipeline(task, model=path, backend=backend)
    audio = waves(3)
    want = hf_run(task, path, audio[0])
    assert want["text"].strip(), "random weights transcribed nothing: the check is vacuous"
    close(ours(audio[0]), want)
    close(ours(audio, batch_size=2), hf_run(task, path, audio, batch_size=2))
    close(ours({"raw": audio[1], "sampling_rate": 16000}), hf_run(task, path, audio[1]))
    with pytest.raises(InputError, match="resample"):
        ours({"raw": audio[1], "sampling_rate": 8000})


@pytest.fixture(scope="module")
def speech2text(hf_checkpoint, tmp_path_factory):
    from conftest_tokenization import build_speech_to_text

    path = tmp_path_factory.mktemp("s2t-tok")
    build_speech_to_text(path)
    n = len(transformers.Speech2TextTokenizer.from_pretrained(path))
    model_dir, _ = hf_checkpoint("Speech2TextForConditionalGeneration", vocab_size=n, d_model=16, encoder_layers=2,
                                 decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=4, encoder_ffn_dim=20,
                                 decoder_ffn_dim=24, conv_channels=12, input_feat_per_channel=8, max_source_positions=50,
                                 max_target_positions=30, pad_token_id=1, bos_token_id=0, eos_token_id=2,
                                 decoder_start_token_id=2)
    out = with_tokenizer(tmp_path_factory, model_dir, path, "s2t-asr")
    transformers.Speech2TextFeatureExtractor(feature_size=8, num_mel_bins=8).save_pretrained(out)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_speech_recognition_seq2seq(speech2text, backend):
    task, path = "automatic-speech-recognition", speech2text
    ours = isoform.pipeline(task, model=path, backend=backend)
    audio, options = waves(3, seed=2), dict(max_new_tokens=6, do_sample=False)  # transformers' default: 5 beams
    want = hf_run(task, path, audio[0], generate_kwargs=options)
    assert want["text"].strip(), "random weights generated only special tokens: the check is vacuous"
    close(ours(audio[0], generate_kwargs=options), want)
    close(ours(audio, batch_size=2, **options), hf_run(task, path, audio, batch_size=2, generate_kwargs=options))


@pytest.mark.parametrize("backend", ["jax", "onnxruntime"])
def test_span_zero_shot_vision_audio_pipelines_on_compiled_backends(bert_ner, bert_qa, legacy, bert_nli, vit_cls, clip,
                                                                   wav2vec2_ctc, speech2text, backend):
    """One call of each of the pipelines above on the jit / exported backends (one batch each: few compiles)."""
    texts = NER_TEXTS[2:4]
    ner = isoform.pipeline("ner", model=bert_ner, backend=backend, aggregation_strategy="average", batch_size=2)
    close(ner(texts), hf_run("ner", bert_ner, texts, aggregation_strategy="average"))
    qa = isoform.pipeline("question-answering", model=bert_qa, backend=backend)
    close(qa(*QA_CASES["long-top2"][0], **QA_CASES["long-top2"][1]), legacy["long-top2"])
    zero = isoform.pipeline("zero-shot-classification", model=bert_nli, backend=backend)
    close(zero(TEXTS[0], CANDIDATES), hf_run("zero-shot-classification", bert_nli, TEXTS[0], candidate_labels=CANDIDATES))
    path, pics = vit_cls["ViTForImageClassification"], images(2)
    setup = {"image_processor": transformers.ViTImageProcessorPil.from_pretrained(path)}
    close(isoform.pipeline("image-classification", model=path, backend=backend)(pics, batch_size=2),
          hf_run("image-classification", path, pics, setup))
    setup = {"image_processor": transformers.CLIPImageProcessorPil.from_pretrained(clip)}
    ours = isoform.pipeline("zero-shot-image-classification", model=clip, backend=backend)
    close(ours(pics[0], candidate_labels=["cat", "dog"]),
          hf_run("zero-shot-image-classification", clip, pics[0], setup, candidate_labels=["cat", "dog"]))
    audio = waves(2)
    asr = isoform.pipeline("automatic-speech-recognition", model=wav2vec2_ctc, backend=backend)
    close(asr(audio, batch_size=2), hf_run("automatic-speech-recognition", wav2vec2_ctc, audio, batch_size=2))
    asr = isoform.pipeline("automatic-speech-recognition", model=speech2text, backend=backend)
    options = dict(max_new_tokens=4, do_sample=False, num_beams=1)
    close(asr(audio[0], **options), hf_run("automatic-speech-recognition", speech2text, audio[0], generate_kwargs=options))
