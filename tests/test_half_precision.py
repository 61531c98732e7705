"""`Model.load(..., dtype="float16" / "bfloat16")` values against transformers, on every backend.

Every backend runs both half dtypes (weights and outputs in that dtype; the NumPy reference, ONNX
Runtime and the composites of JAX/torch compute in f32 between roundings, TensorFlow runs most
kernels in the half dtype). The outputs, converted to f32, are compared with transformers'
float32 outputs on the same checkpoint, and with transformers run in the same half dtype on CPU
(it runs both): each difference is recorded as a test property (``--junitxml``) and printed.

Tolerances (max abs): 2e-2 for float16 (measured <= 4e-3: 5x margin); 6e-2 for bfloat16, whose unit
roundoff is 8x float16's: measured up to 3.1e-2 against float32, where transformers' own bfloat16
forward is 1.8e-2 away, so 2e-2 would sit inside bfloat16's rounding noise. A dropped term of these
informative checkpoints moves outputs by > 0.1.

T5 is not among the architectures: its informative checkpoint is so ill-conditioned (logits ~15,
unscaled attention) that transformers' own float16 forward is 0.6 and bfloat16 5.4 away from its
float32 forward; BART is the encoder-decoder here."""

from __future__ import annotations

import functools

import ml_dtypes
import numpy as np
import pytest

import isoform
from isoform.errors import WeightsError
from isoform.testing.parity import record_model

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = {"float16": 2e-2, "bfloat16": 6e-2}
NUMPY = {"float16": np.dtype(np.float16), "bfloat16": np.dtype(ml_dtypes.bfloat16)}
TORCH = {"float16": torch.float16, "bfloat16": torch.bfloat16}
VOCAB = 99
BERT = dict(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=40)
LLAMA = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=64)
BART = dict(vocab_size=VOCAB, d_model=32, encoder_layers=2, decoder_layers=3, encoder_attention_heads=4,
            decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=41, max_position_embeddings=40,
            pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2)
ARCHS = {"bert": ("BertForMaskedLM", BERT, "masked-lm"), "llama": ("LlamaForCausalLM", LLAMA, "causal-lm"),
         "bart": ("BartForConditionalGeneration", BART, "seq2seq-lm")}


def make_inputs(config: dict, task: str) -> dict[str, np.ndarray]:
    """Batch of 2, row 1 padded after 7 of 11 tokens; BERT token types; BART decoder inputs."""
    rng = np.random.default_rng(0)
    ids = rng.integers(3, VOCAB, (2, 11))
    mask = np.ones_like(ids)
    mask[1, 7:] = 0
    ids[mask == 0] = config.get("pad_token_id", 0)
    inputs = {"input_ids": ids, "attention_mask": mask}
    if task == "masked-lm":
        inputs["token_type_ids"] = rng.integers(0, 2, ids.shape)
    if task == "seq2seq-lm":
        inputs |= {"decoder_input_ids": rng.integers(3, VOCAB, (2, 6)), "decoder_attention_mask": np.ones((2, 6), np.int64)}
    return inputs


def run_hf(model, inputs: dict[str, np.ndarray], names) -> dict[str, np.ndarray]:
    with torch.no_grad():
        out = model(**{k: torch.from_numpy(v) for k, v in inputs.items()})
    return {k: out[k].to(torch.float32).numpy() for k in names}


@functools.cache
def hf_half(path: str, cls: str, dtype: str):
    """transformers' model of the checkpoint loaded in `dtype` (a new model: the fixture's is left alone)."""
    return getattr(transformers, cls).from_pretrained(path, dtype=TORCH[dtype]).eval()


def max_diff(got: dict, want: dict, real: np.ndarray | None) -> float:
    # decoder-only per-token outputs at padding are unspecified (transformers' SDPA zeroes masked rows)
    return max(float(np.abs(got[k] - want[k])[... if real is None else real].max()) for k in want)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("arch", list(ARCHS))
def test_half_precision_matches_transformers(hf_checkpoint, backend, record_property, arch, dtype):
    cls, config, task = ARCHS[arch]
    path, hf = hf_checkpoint(cls, **config)
    model = isoform.Model.load(path, backend=backend, task=task, dtype=dtype)
    assert model.dtype == dtype
    params = model.program.numpy_params()
    assert {str(a.dtype) for a in params.values() if a.dtype.kind == "f" or a.dtype == NUMPY["bfloat16"]} == {dtype}
    inputs = make_inputs(config, task)
    out = model(**inputs).numpy()
    assert {str(v.dtype) for v in out.values()} == {dtype}
    got = {k: v.astype(np.float32) for k, v in out.items()}
    assert all(np.isfinite(v).all() for v in got.values())
    real = inputs["attention_mask"].astype(bool) if task == "causal-lm" else None
    vs_f32 = max_diff(got, run_hf(hf, inputs, got), real)
    vs_half = max_diff(got, run_hf(hf_half(str(path), cls, dtype), inputs, got), real)
    record_model(model, vs_f32, dtype=dtype)  # the parity table: half-precision isoform vs float32 transformers
    record_property("max_abs_diff_vs_transformers_float32", vs_f32)
    record_property(f"max_abs_diff_vs_transformers_{dtype}", vs_half)
    print(f"\nhalf-precision {arch} {backend} {dtype}: vs transformers float32 {vs_f32:.2e}, vs transformers {dtype} "
          f"{vs_half:.2e}")
    assert vs_f32 <= TOL[dtype]
    assert vs_half <= TOL[dtype]


@pytest.mark.parametrize("dtype", ["float64", "int8", "float8_e4m3fn"])
def test_other_dtypes_are_rejected_by_name(hf_checkpoint, dtype):
    path, _ = hf_checkpoint("BertForMaskedLM", **BERT)
    with pytest.raises(WeightsError, match=rf"dtype '{dtype}' is not supported; expected one of \['float32', 'float16', "
                                           r"'bfloat16'\]"):
        isoform.Model.load(path, task="masked-lm", dtype=dtype)
