"""LibriSpeechDataModule end to end on the tiny tree: batches, SpecAugment, caching, resume, errors."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import lightning as L
import pytest
import torch

from conformer_prune.data import dataset as dataset_module
from conformer_prune.data.datamodule import LibriSpeechDataModule
from conformer_prune.data.librispeech import load_audio, read_subsets

STRONG_SPEC_AUGMENT = {"num_freq_masks": 2, "freq_mask_width": 20, "num_time_masks": 2, "time_mask_ratio": 0.3}


def make_dm(root: Path, cache: Path, **overrides: Any) -> LibriSpeechDataModule:
    settings: dict[str, Any] = {
        "root": str(root),
        "train_subsets": ["train-clean-100"],
        "dev_subsets": ["dev-clean"],
        "test_subsets": ["test-clean", "test-other"],
        "spec_augment": STRONG_SPEC_AUGMENT,
        "max_batch_seconds": 2.5,
        "cache_dir": str(cache),
        "seed": 5,
    }
    return LibriSpeechDataModule(**{**settings, **overrides})


def fake_trainer(epoch: int = 0, training: bool = True) -> SimpleNamespace:
    return SimpleNamespace(training=training, current_epoch=epoch, world_size=1, global_rank=0)


def test_batches_have_the_documented_keys_dtypes_and_shapes(tiny_librispeech: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_librispeech, tmp_path)
    dm.setup("fit")
    assert dm.tokenizer.vocab_size == 30 and dm.tokenizer.blank_id == 0
    assert dm.feature_extractor.cmvn.fitted
    batches = list(dm.train_dataloader())
    assert sum(len(b["ids"]) for b in batches) == 12
    for batch in batches:
        assert set(batch) == {"features", "feature_lens", "tokens", "token_lens", "texts", "ids"}
        B, T, F = batch["features"].shape
        assert F == 80 and batch["features"].dtype == torch.float32 and torch.isfinite(batch["features"]).all()
        assert batch["feature_lens"].dtype == batch["tokens"].dtype == batch["token_lens"].dtype == torch.int64
        assert (
            batch["feature_lens"].shape == batch["token_lens"].shape == (B,) and int(batch["feature_lens"].max()) == T
        )
        assert batch["tokens"].shape == (B, int(batch["token_lens"].max()))
        for i in range(B):
            n, u = int(batch["feature_lens"][i]), int(batch["token_lens"][i])
            assert (batch["features"][i, n:] == 0).all()  # zero padding
            assert (batch["tokens"][i, u:] == 0).all()  # padded with the blank
            assert dm.tokenizer.decode(batch["tokens"][i, :u].tolist()) == batch["texts"][i]
        assert len(batch["texts"]) == len(batch["ids"]) == B


def test_spec_augment_only_in_training(tiny_librispeech: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_librispeech, tmp_path, dev_subsets=["train-clean-100"])  # same utterances in both loaders
    dm.setup("fit")
    clean = {i: f for b in dm.val_dataloader() for i, f in zip(b["ids"], b["features"], strict=True)}
    again = {i: f for b in dm.val_dataloader() for i, f in zip(b["ids"], b["features"], strict=True)}
    utt = read_subsets(tiny_librispeech, ["train-clean-100"])[0]
    audio, sr = load_audio(utt)
    expected = dm.feature_extractor(audio, sr)
    torch.testing.assert_close(clean[utt.utt_id][: expected.shape[0]], expected)
    assert all(torch.equal(clean[k], again[k]) for k in clean)
    masked = 0
    for batch in dm.train_dataloader():
        for i, feats in zip(batch["ids"], batch["features"], strict=True):
            n = feats.shape[0]
            masked += int((feats != clean[i][:n]).any())
    assert masked > 0


def test_eval_dataloader_by_name_and_unknown_subset(tiny_librispeech: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_librispeech, tmp_path)
    dm.setup("fit")
    ids = [i for b in dm.eval_dataloader("dev-other") for i in b["ids"]]
    assert sorted(ids) == ["116-288045-0000", "116-288045-0001"]
    assert dm.eval_subsets() == ["dev-clean", "test-clean", "test-other"]
    assert len(dm.train_texts()) == 12
    with pytest.raises(ValueError, match=r"train-other-500.*available there: \['dev-clean', 'dev-other'"):
        dm.eval_dataloader("train-other-500")


def test_test_loader_and_corpus_description(tiny_librispeech: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_librispeech, tmp_path)
    dm.setup("fit")
    dm.setup("test")
    assert sum(len(b["ids"]) for b in dm.test_dataloader()) == 4
    desc = dm.corpus_description()
    assert desc["root"] == str(tiny_librispeech) and desc["synthetic"] is False
    assert desc["subsets"]["train-clean-100"]["utterances"] == 12
    assert desc["subsets"]["train-clean-100"]["speakers"] == 2
    assert 0 < desc["subsets"]["dev-clean"]["hours"] < 0.001
    assert desc["skipped"] == {}


def test_features_are_cached_after_the_first_epoch(tiny_librispeech: Path, tmp_path: Path, monkeypatch) -> None:
    dm = make_dm(tiny_librispeech, tmp_path / "cache")
    dm.setup("fit")  # fits CMVN on the training set: decodes it once
    calls = []
    real = dataset_module.load_audio
    monkeypatch.setattr(dataset_module, "load_audio", lambda utt: calls.append(utt.utt_id) or real(utt))
    list(dm.train_dataloader())
    list(dm.train_dataloader())
    assert calls == []
    again = make_dm(tiny_librispeech, tmp_path / "cache", cache_features=False)
    again.setup("fit")  # tokenizer and CMVN come from the cache directory
    torch.testing.assert_close(again.feature_extractor.cmvn.mean, dm.feature_extractor.cmvn.mean)
    list(again.train_dataloader())
    list(again.train_dataloader())
    assert len(calls) == 24


def test_speed_perturbation_in_training_only(tiny_librispeech: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_librispeech, tmp_path, features={"speed_perturb": [0.9, 1.1]}, spec_augment=None)
    dm.setup("fit")
    utt = read_subsets(tiny_librispeech, ["train-clean-100"])[0]
    frames = {
        int(n)
        for _ in range(3)
        for b in dm.train_dataloader()
        for i, n in zip(b["ids"], b["feature_lens"], strict=True)
        if i == utt.utt_id
    }
    plain = utt.num_samples // 160 + 1
    assert frames and plain not in frames
    with pytest.raises(ValueError, match="speed_perturb"):
        make_dm(tiny_librispeech, tmp_path, features={"speed_perturb": [3.0]}).setup("fit")


def test_speed_draws_depend_on_seed_epoch_and_item_only(tiny_librispeech: Path, tmp_path: Path) -> None:
    def draws(seed: int, epoch: int) -> list[float]:
        dm = make_dm(tiny_librispeech, tmp_path, features={"speed_perturb": [0.9, 1.0, 1.1]}, seed=seed)
        dm.setup("fit")
        dm.trainer = fake_trainer(epoch)
        dm.train_dataloader()
        dataset = dm._dataset("train")
        torch.rand(7)  # the global RNG does not enter
        return [dataset.speed(i) for i in range(len(dataset))]

    first = draws(5, 0)
    assert draws(5, 0) == first  # a resumed run draws the same speeds
    assert len(set(first)) > 1
    assert draws(5, 1) != first and draws(6, 0) != first


def test_state_dict_resumes_mid_epoch_exactly(tiny_librispeech: Path, tmp_path: Path) -> None:
    dm = make_dm(tiny_librispeech, tmp_path, max_batch_seconds=1.5)
    dm.setup("fit")
    dm.trainer = fake_trainer(epoch=1)
    full = [b["ids"] for b in dm.train_dataloader()]
    assert len(full) >= 4
    seen = []
    for batch in dm.train_dataloader():
        seen.append(dm.on_after_batch_transfer(batch, 0)["ids"])
        if len(seen) == 3:
            break
    state = dm.state_dict()
    assert state["epoch"] == 1 and state["batches_done"] == 3
    assert isinstance(state["tokenizer_model"], bytes) and "cmvn" in state["feature_config"]

    resumed = make_dm(tiny_librispeech, tmp_path / "elsewhere", max_batch_seconds=1.5)
    resumed.load_state_dict(state)  # Lightning: before the train dataloader exists
    resumed.setup("fit")
    assert resumed.tokenizer.model_bytes == dm.tokenizer.model_bytes
    resumed.trainer = fake_trainer(epoch=1)
    loader = resumed.train_dataloader()
    loader.batch_sampler.sampler.set_epoch(1)  # what Lightning does at the start of the epoch
    assert seen + [b["ids"] for b in loader] == full
    loader.batch_sampler.sampler.set_epoch(2)
    assert len(list(loader)) == len(full)


class _Probe(L.LightningModule):
    """Records the utterance ids of every training batch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(80, 1)
        self.seen: list[list[str]] = []

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        self.seen.append(list(batch["ids"]))
        return self.layer(batch["features"]).mean()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.01)


def _trainer(tmp_path: Path, **kw: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False, use_distributed_sampler=False,
                     num_sanity_val_steps=0, limit_val_batches=0, default_root_dir=tmp_path, **kw)  # fmt: skip


class _SaveAt(L.Callback):
    """Writes a checkpoint after the given global step, as ModelCheckpoint(every_n_train_steps=...) would."""

    def __init__(self, step: int, path: Path) -> None:
        self.step, self.path = step, path

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if trainer.global_step == self.step:
            trainer.save_checkpoint(self.path)


def test_lightning_checkpoint_resumes_mid_epoch(tiny_librispeech: Path, tmp_path: Path) -> None:
    reference = _Probe()
    dm = make_dm(tiny_librispeech, tmp_path, max_batch_seconds=1.5)
    dm.setup("fit")
    steps = len(dm.train_dataloader())
    save_at = steps + 2  # inside the second epoch
    trainer = _trainer(tmp_path, max_epochs=2, callbacks=[_SaveAt(save_at, tmp_path / "mid.ckpt")])
    trainer.fit(reference, dm)
    assert len(reference.seen) == 2 * steps
    state = torch.load(tmp_path / "mid.ckpt", weights_only=False)["LibriSpeechDataModule"]
    assert (state["epoch"], state["batches_done"]) == (1, 2)

    resumed = _Probe()
    trainer = _trainer(tmp_path, max_epochs=2)
    trainer.fit(resumed, make_dm(tiny_librispeech, tmp_path, max_batch_seconds=1.5), ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.seen == reference.seen[save_at:]
    assert trainer.global_step == 2 * steps


def test_out_of_alphabet_transcripts_and_bad_config(tiny_librispeech: Path, tmp_path: Path) -> None:
    tree = Path(shutil.copytree(tiny_librispeech, tmp_path / "LibriSpeech"))
    trans = tree / "dev-clean" / "84" / "121123" / "84-121123.trans.txt"
    trans.write_text(trans.read_text().replace("I SEE", "I SEE 2 CATS"))
    with pytest.raises(ValueError, match=r"84-121123\.trans\.txt: utterance 84-121123-0001.*'2'"):
        make_dm(tree, tmp_path / "c").setup("fit")
    dm = make_dm(tree, tmp_path / "c", tokenizer={"oov_policy": "drop"})
    dm.setup("fit")
    assert sum(len(b["ids"]) for b in dm.val_dataloader()) == 2
    assert dm.corpus_description()["skipped"] == {"out_of_alphabet_dropped": 1}
    with pytest.raises(ValueError, match=r"data.tokenizer: unknown key\(s\) \['vocab'\]"):
        make_dm(tree, tmp_path, tokenizer={"vocab": 3})
    with pytest.raises(ValueError, match="data.on_error"):
        make_dm(tree, tmp_path, on_error="ignore")
    with pytest.raises(ValueError, match="does not exist"):
        make_dm(tmp_path / "missing", tmp_path).setup("fit")


def test_monitored_training_utterances_are_a_fixed_unaugmented_sample(tiny_librispeech: Path, tmp_path: Path) -> None:
    plain = make_dm(tiny_librispeech, tmp_path)
    plain.setup("fit")
    assert not isinstance(plain.val_dataloader(), list)
    dm = make_dm(tiny_librispeech, tmp_path, monitor_train_utterances=3, features={"speed_perturb": [0.9, 1.1]})
    dm.setup("fit")
    dev, monitor = dm.val_dataloader()
    ids = [i for b in monitor for i in b["ids"]]
    train_ids = {u.utt_id for u in read_subsets(tiny_librispeech, ["train-clean-100"])}
    assert len(ids) == 3 and set(ids) <= train_ids
    assert ids == [i for b in dm.val_dataloader()[1] for i in b["ids"]]  # the same sample every validation
    first = next(iter(monitor))
    utt = next(u for u in read_subsets(tiny_librispeech, ["train-clean-100"]) if u.utt_id == first["ids"][0])
    audio, sr = load_audio(utt)
    expected = dm.feature_extractor(audio, sr)  # speed 1.0, no SpecAugment
    torch.testing.assert_close(first["features"][0][: expected.shape[0]], expected)
    with pytest.raises(ValueError, match="monitor_train_utterances"):
        make_dm(tiny_librispeech, tmp_path, monitor_train_utterances=-1)


def test_dataset_names_stay_importable_from_the_data_module() -> None:
    from conformer_prune.data import dataset
    from conformer_prune.data.datamodule import Batch, Collate, UtteranceDataset

    assert (Batch, Collate, UtteranceDataset) == (dataset.Batch, dataset.Collate, dataset.UtteranceDataset)
