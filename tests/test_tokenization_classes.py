"""Every architecture isoform supports has its transformers tokenizer class compared with isoform's.

``CLASSES`` maps each registered model_type to the fixture directory laid out as its checkpoints are
and the class transformers' AutoTokenizer loads for it; ``test_tokenization`` (encoder and decoder
classes), ``test_tokenization_seq2seq`` (seq2seq classes) and ``test_tokenization_ctc`` (Wav2Vec2's CTC
class) run every behaviour on those directories and on what the class's ``save_pretrained`` writes for
them. ``WITHOUT_TOKENIZER`` are the registered model types that have no tokenizer (image models).
"""

import pytest
import test_tokenization
import test_tokenization_ctc
import test_tokenization_seq2seq
from conftest_tokenization import SAVED, tokenizer_dirs  # noqa: F401  (session fixture)
from test_tokenization_seq2seq import seq2seq_dirs  # noqa: F401  (session fixture)

from isoform.architectures import REGISTRY

transformers = pytest.importorskip("transformers")

# model_type -> (fixture directory, transformers class AutoTokenizer loads for it)
CLASSES = {
    "bert": ("wordpiece", "BertTokenizer"),
    "roberta": ("roberta", "RobertaTokenizer"),
    "xlm-roberta": ("xlm-roberta", "XLMRobertaTokenizer"),
    "camembert": ("camembert", "CamembertTokenizer"),
    "electra": ("electra", "BertTokenizer"),  # by model_type: no ElectraTokenizer in transformers 5
    "megatron-bert": ("megatron-bert", "BertTokenizer"),
    "layoutlm": ("layoutlm", "BertTokenizer"),
    "funnel": ("funnel", "FunnelTokenizer"),
    "mobilebert": ("mobilebert", "BertTokenizer"),  # MobileBertTokenizer is an alias of it
    "squeezebert": ("squeezebert", "BertTokenizer"),
    "convbert": ("convbert", "BertTokenizer"),
    "roformer": ("roformer", "RoFormerTokenizer"),
    "ibert": ("ibert", "RobertaTokenizer"),
    "deberta": ("deberta", "DebertaTokenizer"),
    "deberta-v2": ("deberta-v2", "DebertaV2Tokenizer"),  # v2 and v3 checkpoints
    "distilbert": ("distilbert", "DistilBertTokenizer"),
    "albert": ("albert", "AlbertTokenizer"),
    "mpnet": ("mpnet", "MPNetTokenizer"),
    "openai-gpt": ("openai-gpt", "OpenAIGPTTokenizer"),
    "gpt2": ("gpt2", "GPT2Tokenizer"),
    "gpt_neo": ("gpt-neo", "GPT2Tokenizer"),
    "llama": ("llama", "LlamaTokenizer"),
    "mistral": ("mistral", "TokenizersBackend"),  # whatever tokenizer_class says (LlamaTokenizer)
    "qwen2": ("qwen2", "Qwen2Tokenizer"),
    "t5": ("t5", "T5Tokenizer"),
    "mt5": ("mt5", "T5Tokenizer"),
    "bart": ("bart", "RobertaTokenizer"),  # BartTokenizer is an alias of it
    "mbart": ("mbart", "MBartTokenizer"),
    "pegasus": ("pegasus", "PegasusTokenizer"),
    "marian": ("marian", "MarianTokenizer"),
    "blenderbot": ("blenderbot", "BlenderbotTokenizer"),
    "blenderbot-small": ("blenderbot-small", "BlenderbotSmallTokenizer"),
    "m2m_100": ("m2m100", "M2M100Tokenizer"),
    "speech_to_text": ("speech_to_text", "Speech2TextTokenizer"),
    "clip": ("clip", "CLIPTokenizer"),
    "clip_text_model": ("clip", "CLIPTokenizer"),
    "wav2vec2": ("wav2vec2", "Wav2Vec2CTCTokenizer"),
}
WITHOUT_TOKENIZER = {"vit", "deit", "clip_vision_model"}  # image-only models: no tokenizer to compare
COMPARED = {*test_tokenization.NAMES, *test_tokenization_seq2seq.NAMES, *test_tokenization_ctc.NAMES}


def test_every_architecture_has_its_tokenizer_compared():
    assert not set(CLASSES) & WITHOUT_TOKENIZER
    assert set(CLASSES) | WITHOUT_TOKENIZER == set(REGISTRY), (
        "add the new architecture's tokenizer to CLASSES and a fixture (without one: to WITHOUT_TOKENIZER)"
    )
    for name, _ in CLASSES.values():
        assert {name, name + SAVED} <= COMPARED, name


@pytest.mark.parametrize("model_type", sorted(CLASSES))
def test_fixture_is_the_architecture_class(model_type, tokenizer_dirs, seq2seq_dirs):  # noqa: F811
    """AutoTokenizer loads the architecture's class from its fixture directory and from the saved copy."""
    name, cls = CLASSES[model_type]
    shared = {*test_tokenization.NAMES, *test_tokenization_ctc.NAMES}
    dirs = tokenizer_dirs if name in shared else seq2seq_dirs
    for path in (dirs[name], dirs[name + SAVED]):
        assert type(test_tokenization.reference(path)).__name__ == cls, path
