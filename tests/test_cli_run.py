"""``isoform run`` and text-level generation (stop strings, `TextStreamer`) on a tiny GPT-2 whose
checkpoint directory also holds a BPE tokenizer trained here; expected text comes from transformers'
``generate`` + the same tokenizer in transformers."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest_tokenization import tokenizer_dirs  # noqa: F401  (session fixture of the fixtures below)
from test_pipelines import (  # noqa: F401  (bert_*: tiny checkpoints with tokenizers)
    CANDIDATES,
    MASKED,
    NER_TEXTS,
    TEXTS,
    bert_mlm,
    bert_ner,
    bert_nli,
    close,
    hf_pipeline,
    hf_run,
)

import isoform
from isoform.cli import main
from isoform.generation import TextStreamer

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TEXT = ["the cat sat on the mat", "a dog ran in the fog", "stop and go, then stop again", "one two three four",
        "abcdef"] * 20  # transformers decodes every token after "abcdef" to find its text
PROMPT = "the dog sat"


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    """(directory, transformers model, transformers tokenizer): GPT-2 sized to a Metaspace BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer, tok.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    tok.train_from_iterator(TEXT, trainers.BpeTrainer(vocab_size=80, special_tokens=["<pad>", "<eos>", "<unk>"]))
    hf_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>",
                                                  unk_token="<unk>")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=len(hf_tok), n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                     pad_token_id=0, bos_token_id=1, eos_token_id=1)
    hf = transformers.GPT2LMHeadModel(config).eval()
    path = tmp_path_factory.mktemp("gpt2-with-tokenizer")
    hf.save_pretrained(path)
    hf_tok.save_pretrained(path)
    return path, hf, hf_tok


def hf_text(hf, hf_tok, **options) -> str:
    ids = hf_tok(PROMPT, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = hf.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, **options)
    return hf_tok.decode(out[0], skip_special_tokens=True)


def test_run_streams_the_greedy_text(lm, backend, capsys):
    path, hf, hf_tok = lm
    assert main(["run", str(path), "--prompt", PROMPT, "--backend", backend, "--max-new-tokens", "12"]) == 0
    assert capsys.readouterr().out == hf_text(hf, hf_tok, max_new_tokens=12) + "\n"


def test_run_beam_search_and_sampling(lm, capsys):
    path, hf, hf_tok = lm
    assert main(["run", str(path), "--prompt", PROMPT, "--max-new-tokens", "6", "--num-beams", "3"]) == 0
    assert capsys.readouterr().out == hf_text(hf, hf_tok, max_new_tokens=6, num_beams=3) + "\n"
    sampled = ["run", str(path), "--prompt", PROMPT, "--max-new-tokens", "6", "--do-sample", "--top-k", "5",
               "--temperature", "0.7", "--seed", "1"]
    assert main(sampled) == 0
    first = capsys.readouterr().out
    assert main(sampled) == 0
    assert capsys.readouterr().out == first and first.startswith(PROMPT.split()[0])


def test_run_reports_bad_input(lm, capsys):
    path, _, _ = lm
    assert main(["run", str(path), "--prompt", PROMPT, "--max-new-tokens", "0"]) == 2
    assert "max_new_tokens" in capsys.readouterr().err
    assert main(["run", str(path), "--prompt", PROMPT, "--do-sample", "--top-p", "1.5"]) == 2
    assert "top_p" in capsys.readouterr().err
    assert main(["run", str(path), "--prompt", PROMPT, "--max-new-tokens", "70"]) == 2
    assert "context window of 64" in capsys.readouterr().err


def test_text_streamer_writes_increments(lm):
    path, _, _ = lm
    tok = isoform.Tokenizer.load(path)
    model = isoform.Model.load(path, task="causal-lm")
    ids = tok(PROMPT, return_tensors="np")["input_ids"]
    chunks = []

    class Sink(io.StringIO):
        def write(self, s):
            chunks.append(s)
            return super().write(s)

    sink = Sink()
    out = model.generate(ids, max_new_tokens=8, streamer=TextStreamer(tok, ids[0], sink))
    assert sink.getvalue() == tok.decode(out[0], skip_special_tokens=True) + "\n"
    assert len([c for c in chunks if c]) > 3


def test_stop_strings_match_transformers(lm, backend):
    path, hf, hf_tok = lm
    tok = isoform.Tokenizer.load(path)
    model = isoform.Model.load(path, backend=backend, task="causal-lm")
    ids = tok(PROMPT, return_tensors="np")["input_ids"]
    free = hf_text(hf, hf_tok, max_new_tokens=12)[len(PROMPT):]
    stop = free.strip()[2:4]  # a string the model does produce, ending inside a later token
    assert stop.strip()
    want = hf_tok(hf_text(hf, hf_tok, max_new_tokens=12, stop_strings=[stop], tokenizer=hf_tok),
                  add_special_tokens=False)["input_ids"]
    got = model.generate(ids, max_new_tokens=12, stop_strings=stop, tokenizer=tok)
    assert tok.decode(got[0], skip_special_tokens=True) == hf_tok.decode(want, skip_special_tokens=True)
    assert got.shape[1] < ids.shape[1] + 12
    greedy = np.asarray(model.generate(ids, max_new_tokens=12))
    np.testing.assert_array_equal(got[0], greedy[0, :got.shape[1]])


def test_run_image_prints_the_top_5(hf_checkpoint, tmp_path, capsys):
    """``--image``: the checkpoint's image processor, then the five most probable labels, as transformers ranks them."""
    from PIL import Image

    labels = {str(i): f"label {i}" for i in range(7)}
    path, hf = hf_checkpoint("ViTForImageClassification", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=37, image_size=24, patch_size=4, id2label=labels)
    proc = transformers.ViTImageProcessorPil(size={"height": 24, "width": 24})
    proc.save_pretrained(path)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8))
    image.save(tmp_path / "image.png")
    with torch.no_grad():
        probs = hf(**proc(image, return_tensors="pt")).logits.softmax(-1)[0].numpy()
    assert main(["run", str(path), "--image", str(tmp_path / "image.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("  ")[1] for line in lines] == [labels[str(i)] for i in np.argsort(-probs)[:5]]
    np.testing.assert_allclose([float(line.split()[0]) for line in lines], np.sort(probs)[::-1][:5], atol=1e-4)


def test_run_audio_transcribes_with_ctc(hf_checkpoint, tmp_path, capsys):
    """``--audio``: a 16-bit WAV read with the standard library, the feature extractor, argmax, CTC decoding."""
    import wave

    from conftest_tokenization import build_wav2vec2

    (tmp_path / "tok").mkdir()
    build_wav2vec2(tmp_path / "tok")
    hf_tok = transformers.Wav2Vec2CTCTokenizer.from_pretrained(tmp_path / "tok")
    path, hf = hf_checkpoint("Wav2Vec2ForCTC", conv_dim=(16, 16, 16), conv_kernel=(10, 3, 3), conv_stride=(5, 2, 2),
                             hidden_size=24, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                             num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4, vocab_size=len(hf_tok))
    hf_tok.save_pretrained(path)
    fe = transformers.Wav2Vec2FeatureExtractor()
    fe.save_pretrained(path)
    samples = (np.random.default_rng(0).normal(size=4000) * 3000).astype(np.int16)
    with wave.open(str(tmp_path / "speech.wav"), "wb") as f:
        f.setnchannels(1), f.setsampwidth(2), f.setframerate(16000), f.writeframes(samples.tobytes())
    with torch.no_grad():
        logits = hf(**fe(samples.astype(np.float32) / 32768, sampling_rate=16000, return_tensors="pt")).logits
    want = hf_tok.batch_decode(logits.argmax(-1))[0]
    assert main(["run", str(path), "--audio", str(tmp_path / "speech.wav")]) == 0
    assert capsys.readouterr().out == want + "\n"


# -- --task <pipeline>: isoform.pipeline's result as JSON lines, embeddings to .npy -------------------
def json_lines(capsys) -> list:
    import json

    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_run_pipeline_tasks_print_json_lines(bert_mlm, bert_ner, bert_nli, capsys):  # noqa: F811
    assert main(["run", str(bert_mlm), "--task", "fill-mask", "--text", MASKED[0], "--top-k", "3"]) == 0
    close(json_lines(capsys), hf_pipeline("fill-mask", bert_mlm)(MASKED[0], top_k=3))
    assert main(["run", str(bert_mlm), "--task", "fill-mask", "--text", MASKED[2], "--backend", "torch"]) == 0
    close(json_lines(capsys), hf_pipeline("fill-mask", bert_mlm)(MASKED[2]))  # a line per mask
    text = NER_TEXTS[3]
    assert main(["run", str(bert_ner), "--task", "ner", "--text", text, "--aggregation-strategy", "simple"]) == 0
    want = hf_run("ner", bert_ner, text, aggregation_strategy="simple")
    assert len(want) > 1
    close(json_lines(capsys), want)
    assert main(["run", str(bert_nli), "--task", "zero-shot-classification", "--text", TEXTS[0],
                 "--labels", ", ".join(CANDIDATES)]) == 0
    close(json_lines(capsys), [hf_run("zero-shot-classification", bert_nli, TEXTS[0], candidate_labels=CANDIDATES)])
    assert main(["run", str(bert_nli), "--task", "zero-shot-classification", "--text", TEXTS[0]]) == 2
    assert "--labels" in capsys.readouterr().err
    assert main(["run", str(bert_mlm), "--task", "fill-mask", "--text", MASKED[0], "-o", "x.npy"]) == 2
    assert "-o/--output saves embeddings" in capsys.readouterr().err


def test_run_saves_embeddings(minilm_dir, bert_mlm, tmp_path, capsys):  # noqa: F811
    st = pytest.importorskip("sentence_transformers").SentenceTransformer(str(minilm_dir), device="cpu")
    out = tmp_path / "emb.npy"
    assert main(["run", str(minilm_dir), "--task", "sentence-embedding", "--text", TEXTS[1], "-o", str(out)]) == 0
    got, want = np.load(out), st.encode(TEXTS[1])
    assert got.shape == want.shape == (384,) and np.abs(got - want).max() <= 1e-5
    assert main(["run", str(bert_mlm), "--task", "feature-extraction", "--text", TEXTS[0], "-o", str(out)]) == 0
    want = hf_pipeline("feature-extraction", bert_mlm)(TEXTS[0], return_tensors=True).numpy()
    got = np.load(out)
    assert got.shape == want.shape and np.abs(got - want).max() <= 1e-5
    assert main(["run", str(bert_mlm), "--task", "feature-extraction", "--text", TEXTS[0]]) == 0
    printed = json_lines(capsys)
    assert len(printed) == 1 and np.abs(np.array(printed[0]) - want).max() <= 1e-5
