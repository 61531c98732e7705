"""What a transformers user expects of `Model.load` and the ``isoform`` command: dtype spellings and
``dtype="auto"`` (decided as transformers decides it), ``progress=False``, ``device=``, TensorFlow's
C++ log lines kept off stderr, aliases only for architectures isoform has, "did you mean" for
mistyped aliases and backends, ``isoform --version``, and ``isoform run`` taking the task from the
checkpoint. Outputs are compared with transformers on the same tiny checkpoint."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

import isoform
from isoform import architectures, backends, hub
from isoform.cli import main
from isoform.errors import BackendError, HubError, WeightsError

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

BERT = dict(vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
TOL = {"float32": 1e-4, "float16": 2e-2, "bfloat16": 6e-2}  # as tests/test_half_precision.py
TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
IDS = np.random.default_rng(0).integers(5, 99, (2, 9))
MASK = np.array([[1] * 9, [1] * 6 + [0] * 3])


def hf_out(hf, dtype: str = "float32") -> np.ndarray:
    """transformers' last_hidden_state of IDS/MASK, the model cast to ``dtype`` (a copy: the fixture's is kept)."""
    model = hf if dtype == "float32" else copy.deepcopy(hf).to(TORCH[dtype])
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(IDS), attention_mask=torch.from_numpy(MASK)).last_hidden_state
    return out.float().numpy()


def diff(model: isoform.Model, want: np.ndarray) -> float:
    got = model(input_ids=IDS, attention_mask=MASK).numpy()["last_hidden_state"].astype(np.float32)
    return float(np.abs(got - want).max())


# -- dtype -----------------------------------------------------------------------------------------
SPELLINGS = [("float32", "float32"), ("fp32", "float32"), ("float", "float32"), ("FP32", "float32"),
             (np.float32, "float32"), (np.dtype("float32"), "float32"), (torch.float32, "float32"),
             ("float16", "float16"), ("fp16", "float16"), ("half", "float16"), (np.float16, "float16"),
             (torch.float16, "float16"), (torch.half, "float16"), ("torch.float16", "float16"),
             ("bfloat16", "bfloat16"), ("bf16", "bfloat16"), (ml_dtypes.bfloat16, "bfloat16"),
             (torch.bfloat16, "bfloat16")]


@pytest.mark.parametrize(("spelling", "name"), SPELLINGS, ids=[str(s) for s, _ in SPELLINGS])
def test_dtype_spellings(hf_checkpoint, spelling, name):
    path, hf = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path, backend="torch", dtype=spelling)
    assert model.dtype == name
    assert {p.dtype for p in model.program.module.parameters()} == {TORCH[name]}
    assert diff(model, hf_out(hf, name)) <= TOL[name]


def test_default_dtype_is_float32_whatever_the_checkpoint(hf_checkpoint, tmp_path):
    _, hf = hf_checkpoint("BertModel", **BERT)
    copy.deepcopy(hf).half().save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "float16"
    assert isoform.Model.load(tmp_path).dtype == "float32"


@pytest.mark.parametrize("spelling", ["float64", "fp8", "int8", 3, torch.float64, np.int32, "automatic"])
def test_other_dtypes_name_the_accepted_spellings(hf_checkpoint, spelling):
    path, _ = hf_checkpoint("BertModel", **BERT)
    with pytest.raises(WeightsError, match=r"is not supported; expected one of \['float32', 'float16', 'bfloat16'\] "
                                           r"\(or 'fp32', 'float', 'f32', 'fp16', 'half', 'f16', 'bf16', 'auto'"):
        isoform.Model.load(path, dtype=spelling)


def _rewrite(src, dst, config_dtype: str | None, dtype_of) -> None:
    """``src``'s checkpoint in ``dst`` with each tensor cast to ``dtype_of(name)`` and config.json's dtype
    set to ``config_dtype`` (None: no dtype key, so "auto" must read the weights)."""
    from safetensors.torch import load_file, save_file

    dst.mkdir()
    tensors = load_file(src / "model.safetensors")
    save_file({k: v.to(dtype_of(k)) for k, v in tensors.items()}, dst / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((src / "config.json").read_text())
    config.pop("dtype", None)
    config.pop("torch_dtype", None)
    if config_dtype is not None:
        config["dtype"] = config_dtype
    (dst / "config.json").write_text(json.dumps(config))


FIRST = "embeddings.LayerNorm.bias"  # the first key in sorted order: what transformers reads without a config dtype
AUTO = {
    "config-float16": ("float16", lambda k: torch.float32),  # config.json wins over the weights
    "config-bfloat16": ("bfloat16", lambda k: torch.float16),
    "weights-bfloat16": (None, lambda k: torch.bfloat16),
    "weights-first-tensor": (None, lambda k: torch.bfloat16 if k == FIRST else torch.float16),
    "weights-float32": (None, lambda k: torch.float32),
}


@pytest.mark.parametrize("case", list(AUTO))
def test_auto_dtype_is_the_one_transformers_picks(hf_checkpoint, tmp_path, case):
    path, _ = hf_checkpoint("BertModel", **BERT)
    config_dtype, dtype_of = AUTO[case]
    _rewrite(path, tmp_path / "ckpt", config_dtype, dtype_of)
    want = transformers.BertModel.from_pretrained(tmp_path / "ckpt", dtype="auto").eval()
    model = isoform.Model.load(tmp_path / "ckpt", backend="torch", dtype="auto")
    assert f"torch.{model.dtype}" == str(want.dtype)
    assert diff(model, hf_out(want)) <= TOL[model.dtype]


def test_auto_dtype_torch_dtype_key_and_unloadable(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint("BertModel", **BERT)
    _rewrite(path, tmp_path / "legacy", None, lambda k: torch.float32)
    config = json.loads((tmp_path / "legacy" / "config.json").read_text())
    (tmp_path / "legacy" / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}))
    assert isoform.Model.load(tmp_path / "legacy", dtype="AUTO").dtype == "bfloat16"
    _rewrite(path, tmp_path / "f64", "float64", lambda k: torch.float64)
    with pytest.raises(WeightsError, match=r"dtype='auto' is 'float64' \(from config.json\), which isoform does not load"):
        isoform.Model.load(tmp_path / "f64", dtype="auto")


def test_spellings_on_the_command_line(hf_checkpoint, tmp_path, capsys):
    path, _ = hf_checkpoint("BertModel", **BERT)
    assert main(["export", str(path), "--dtype", "fp16", "-o", str(tmp_path / "m.onnx"), "--no-check"]) == 0
    assert "float16" in capsys.readouterr().out.splitlines()[0]
    assert main(["export", str(path), "--dtype", "double", "-o", str(tmp_path / "m.onnx")]) == 2
    assert "'fp16', 'half'" in capsys.readouterr().err


# -- progress ---------------------------------------------------------------------------------------
def test_progress_false_turns_the_bar_off(hf_checkpoint, capsys):
    path, _ = hf_checkpoint("BertModel", **dict(BERT, num_hidden_layers=4))  # > 50 tensors: bar shown by default
    isoform.Model.load(path)
    assert "Loading weights" in capsys.readouterr().err
    isoform.Model.load(path, progress=False)
    assert "Loading weights" not in capsys.readouterr().err
    small, _ = hf_checkpoint("BertModel", **BERT)
    isoform.Model.load(small, progress=True)
    assert "Loading weights" in capsys.readouterr().err


# -- device -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["cpu", "torch.device"])
def test_torch_device(hf_checkpoint, device):
    path, hf = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path, backend="torch", device=torch.device("cpu") if device == "torch.device" else device)
    assert {p.device for p in model.program.module.parameters()} == {torch.device("cpu")}
    out = model(input_ids=IDS, attention_mask=MASK).last_hidden_state
    assert isinstance(out, torch.Tensor) and out.device == torch.device("cpu")
    assert diff(model, hf_out(hf)) <= TOL["float32"]
    assert diff(model.to("torch", device="cpu"), hf_out(hf)) <= TOL["float32"]


@pytest.mark.parametrize("device", ["cpu", "jax.Device"])
def test_jax_device(hf_checkpoint, device):
    jax = pytest.importorskip("jax")
    cpu = jax.devices("cpu")[0]
    path, hf = hf_checkpoint("BertModel", **BERT)
    model = isoform.Model.load(path, backend="jax", device=cpu if device == "jax.Device" else device)
    assert model.backend.device == cpu
    assert {d for p in model.program.params.values() for d in p.devices()} == {cpu}
    out = model(input_ids=IDS, attention_mask=MASK).last_hidden_state
    assert isinstance(out, jax.Array) and out.devices() == {cpu}
    assert diff(model, hf_out(hf)) <= TOL["float32"]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_generation_on_a_device(hf_checkpoint, backend):
    """The KV-cached decoders compile over the placed parameters: greedy tokens as transformers'."""
    path, hf = hf_checkpoint("GPT2LMHeadModel", vocab_size=99, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    device = pytest.importorskip("jax").devices("cpu")[0] if backend == "jax" else torch.device("cpu")
    model = isoform.Model.load(path, backend=backend, task="causal-lm", device=device)
    with torch.no_grad():
        want = hf.generate(torch.from_numpy(IDS[:1]), attention_mask=torch.ones(1, 9, dtype=torch.long), max_new_tokens=5,
                           do_sample=False, pad_token_id=0).numpy()
    np.testing.assert_array_equal(model.generate(IDS[:1], max_new_tokens=5), want)


@pytest.mark.parametrize(("backend", "device", "message"), [
    ("torch", "cuda", r"device 'cuda' is not available to backend 'torch'"),
    ("torch", "cuda:3", r"device 'cuda:3' is not available to backend 'torch'"),
    ("torch", "gpu", r"device 'gpu' is not available to backend 'torch'"),
    ("jax", "gpu:0", r"device 'gpu:0' is not available to backend 'jax'"),
    ("jax", "cpu:7", r"device 'cpu:7' is not available to backend 'jax'"),
    ("jax", 0, r"backend 'jax' takes a jax.Device"),
    ("numpy", "cuda", r"backend 'numpy' runs on the CPU only: device='cuda'"),
    ("onnxruntime", "cuda:0", r"backend 'onnxruntime' runs on the CPU only: device='cuda:0'"),
])
def test_unavailable_device_fails_at_load_before_weights(hf_checkpoint, monkeypatch, backend, device, message):
    if backend == "torch" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    path, _ = hf_checkpoint("BertModel", **BERT)
    monkeypatch.setattr("isoform.model.load_params", lambda *a, **k: pytest.fail("weights read before the device check"))
    with pytest.raises(BackendError, match=message):
        isoform.Model.load(path, backend=backend, device=device)


def test_cpu_only_backends_take_cpu(hf_checkpoint):
    path, hf = hf_checkpoint("BertModel", **BERT)
    for device in (None, "cpu"):
        assert diff(isoform.Model.load(path, device=device), hf_out(hf)) <= TOL["float32"]


# -- TensorFlow's log lines -------------------------------------------------------------------------
TF_LOG = re.compile(r"^[IWEF]\d{4} |absl::InitializeLog|cpu_feature_guard|oneDNN|rebuild TensorFlow", re.MULTILINE)


def test_tensorflow_import_prints_no_cpp_log_lines(hf_checkpoint):
    pytest.importorskip("tensorflow")
    path, _ = hf_checkpoint("BertModel", **BERT)
    code = ("import os, sys, numpy as np, isoform\n"
            f"m = isoform.Model.load({str(path)!r}, backend='tensorflow')\n"
            "out = m(input_ids=np.array([[5, 6, 7]])).numpy()['last_hidden_state']\n"
            "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], out.shape)\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "GLOG_", "ABSL_"))}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["2", "(1,", "3,", "32)"]
    assert not TF_LOG.search(done.stderr), done.stderr


def test_tensorflow_log_level_is_the_users_if_set(monkeypatch):
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    backends.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL")
    backends.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "2"


# -- aliases and "did you mean" ----------------------------------------------------------------------
def test_every_alias_names_an_architecture_isoform_has():
    assert set(hub.ALIAS_MODEL_TYPES) == set(hub.ALIASES), "give each alias its model_type in hub.ALIAS_MODEL_TYPES"
    missing = {a: t for a, t in hub.ALIAS_MODEL_TYPES.items() if t not in architectures.supported()}
    assert not missing, f"aliases of model types isoform has no architecture for: {missing}"
    assert not {"opt-125m", "pythia-70m", "pythia-160m"} & set(hub.ALIASES)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_mistyped_alias_suggests_the_alias(offline):
    with pytest.raises(HubError, match=r"did you mean 'bert-base'"):
        isoform.Model.load("bert-bsae")
    with pytest.raises(HubError, match=r"did you mean 'gpt2'"):
        isoform.Tokenizer.load("gtp2")
    with pytest.raises(HubError, match=r"did you mean 'google-bert/bert-base-uncased'"):
        hub.resolve("google-bert/bert-base-uncasd")
    with pytest.raises(HubError) as e:
        hub.resolve("qqqqqqqq")
    assert "did you mean" not in str(e.value)


@pytest.mark.parametrize(("name", "guess"), [("pytorch", "torch"), ("pt", "torch"), ("torch2", "torch"), ("Torch", "torch"),
                                             ("tf", "tensorflow"), ("tensorflo", "tensorflow"), ("ort", "onnxruntime"),
                                             ("onnx", "onnxruntime"), ("np", "numpy"), ("flax", "jax")])
def test_mistyped_backend_suggests_the_backend(hf_checkpoint, name, guess):
    path, _ = hf_checkpoint("BertModel", **BERT)
    with pytest.raises(BackendError, match=rf"unknown backend '{name}'; registered backends: .*; did you mean '{guess}'\?$"):
        isoform.Model.load(path, backend=name)


def test_unlike_backend_gets_no_guess():
    with pytest.raises(BackendError) as e:
        backends.get("caffe")
    assert "did you mean" not in str(e.value)


# -- the command -------------------------------------------------------------------------------------
def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out == f"isoform {isoform.__version__}\n"


WORDS = ["the", "cat", "sat", "on", "mat", "a", "dog", "ran", "in", "fog", "paris", "is", "capital", "of", "france",
         "london", "city", "big", "small", "red", "blue", "green", "house", "tree", "river", "sea", "sky", "sun", "moon",
         "star", "car", "road", "book", "pen", "cup", "tea", "milk", "bread", "king", "queen"]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *".,", *"abcdefghijklmnopqrstuvwxyz",
         *(f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz")]
TEXT = "paris is the [MASK] of france, a big city."


def with_tokenizer(hf_checkpoint, tmp_path, cls: str, **config):
    """(directory, transformers model, transformers tokenizer): a copy of the checkpoint with a WordPiece vocab."""
    assert len(VOCAB) == BERT["vocab_size"]
    path, hf = hf_checkpoint(cls, **BERT, **config)
    directory = tmp_path / cls
    shutil.copytree(path, directory)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    (directory / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))
    return directory, hf, transformers.AutoTokenizer.from_pretrained(directory)


def lines(capsys) -> list[list[str]]:
    return [line.split("  ") for line in capsys.readouterr().out.splitlines()]


def test_run_fill_mask_from_a_masked_lm_checkpoint(hf_checkpoint, tmp_path, capsys):
    directory, hf, tok = with_tokenizer(hf_checkpoint, tmp_path, "BertForMaskedLM")
    want = transformers.pipeline("fill-mask", model=hf, tokenizer=tok)(TEXT)
    for extra in ([], ["--task", "masked-lm"], ["--backend", "torch", "--device", "cpu"]):
        assert main(["run", str(directory), "--text", TEXT, *extra]) == 0
        got = lines(capsys)
        assert [t for _, t in got] == [w["token_str"] for w in want]
        np.testing.assert_allclose([float(s) for s, _ in got], [w["score"] for w in want], atol=1.5e-4)
    assert main(["run", str(directory), "--text", "no mask here"]) == 2
    assert "no mask token '[MASK]'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["run", str(directory), "--text", TEXT, "--backend", "torch", "--device", "cuda"]) == 2
        assert "device 'cuda' is not available to backend 'torch'" in capsys.readouterr().err


def test_run_classifies_with_a_sequence_classification_checkpoint(hf_checkpoint, tmp_path, capsys):
    labels = {str(i): f"label {i}" for i in range(3)}
    directory, hf, tok = with_tokenizer(hf_checkpoint, tmp_path, "BertForSequenceClassification", id2label=labels)
    want = transformers.pipeline("text-classification", model=hf, tokenizer=tok, top_k=None)([TEXT])[0]
    assert main(["run", str(directory), "--text", TEXT]) == 0
    got = lines(capsys)
    assert [label for _, label in got] == [w["label"] for w in want]
    np.testing.assert_allclose([float(s) for s, _ in got], [w["score"] for w in want], atol=1.5e-4)


def test_run_labels_tokens_with_a_token_classification_checkpoint(hf_checkpoint, tmp_path, capsys):
    labels = {str(i): f"TAG-{i}" for i in range(5)}
    directory, hf, tok = with_tokenizer(hf_checkpoint, tmp_path, "BertForTokenClassification", id2label=labels)
    want = transformers.pipeline("token-classification", model=hf, tokenizer=tok, ignore_labels=[])(TEXT)
    assert main(["run", str(directory), "--text", TEXT]) == 0
    got = lines(capsys)
    assert [(t, label) for t, label, _ in got] == [(w["word"], w["entity"]) for w in want]
    np.testing.assert_allclose([float(s) for *_, s in got], [w["score"] for w in want], atol=1.5e-4)


def test_run_bare_model_asks_for_a_task(hf_checkpoint, tmp_path, capsys):
    directory, _, _ = with_tokenizer(hf_checkpoint, tmp_path, "BertModel")
    assert main(["run", str(directory), "--text", TEXT]) == 2
    err = capsys.readouterr().err
    assert "checkpoint is BertModel, which generates no text: pass --task" in err
    assert main(["run", str(directory), "--text", TEXT, "--task", "question-answering"]) == 2
    assert "not task 'question-answering'" in capsys.readouterr().err
