"""The weight layer: read Hugging Face checkpoints, map tensor names onto graph parameters, save back.

Framework-free (NumPy, ml_dtypes, safetensors); torch is imported only to read a legacy
``pytorch_model.bin``. An architecture declares its names as data::

    from isoform.weights import Concat, Rename, Split, Transpose, WeightMap, load_params, open_checkpoint

    BERT = WeightMap(
        [
            Rename("embeddings.word_embeddings.weight", "embeddings.word.weight"),
            Rename("encoder.layer.{i}.attention.self.query.weight", "layers.{i}.q.weight", Transpose()),
            Concat(["encoder.layer.{i}.attention.self.query.bias",
                    "encoder.layer.{i}.attention.self.key.bias",
                    "encoder.layer.{i}.attention.self.value.bias"], "layers.{i}.qkv.bias"),
            Rename("cls.predictions.bias", "mlm.bias", prefixed=False),
        ],
        ignore=[r"^embeddings\\.position_ids$"],   # matched with and without the prefix
        tied={"mlm.decoder.weight": "embeddings.word.weight"},
        prefix="bert.",  # "bert.encoder..." and "encoder..." both load
    )

    with open_checkpoint("./ckpt") as ckpt:   # model.safetensors / sharded index / pytorch_model.bin
        params = load_params(ckpt, BERT, expected={"layers.0.q.weight": ((32, 32), "float32"), ...},
                             dtype="bfloat16", to_native=lambda name, a: torch.tensor(a))

    save_params("./out", numpy_params, BERT, config_dict)   # transformers.from_pretrained("./out") works

Loading is strict (one error lists every missing, unexpected, duplicate and mis-shaped tensor,
found from headers before any data is read) and streams one tensor at a time from the memory map;
``to_native`` may receive a read-only view of the mapped file, so copy if you keep it. Tied names
come back as the *same* native object, and ``save_params`` writes a tied tensor once (under the
name it is tied to, as ``transformers`` does).
"""

from .dtypes import FLOAT_DTYPES, SAFETENSORS_DTYPES, cast, dtype_name, to_numpy_dtype
from .loading import NewParams, auto_dtype, check_params, load_params, source_check
from .mapping import Concat, Rename, Rule, Split, Template, WeightMap
from .readers import Checkpoint, SafetensorsCheckpoint, TorchBinCheckpoint, open_checkpoint
from .saving import parse_size, save_params
from .transforms import Cast, Chain, Reshape, Transform, Transpose, WeightNorm

__all__ = [
    "FLOAT_DTYPES",
    "SAFETENSORS_DTYPES",
    "Cast",
    "Chain",
    "Checkpoint",
    "Concat",
    "NewParams",
    "Rename",
    "Reshape",
    "Rule",
    "SafetensorsCheckpoint",
    "Split",
    "Template",
    "TorchBinCheckpoint",
    "Transform",
    "Transpose",
    "WeightMap",
    "WeightNorm",
    "auto_dtype",
    "cast",
    "check_params",
    "dtype_name",
    "load_params",
    "open_checkpoint",
    "parse_size",
    "save_params",
    "source_check",
    "to_numpy_dtype",
]
