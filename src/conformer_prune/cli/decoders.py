"""Build the configured decoders (``decoding`` config group) for a tokenizer and training text."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from conformer_prune.checkpoint import upgrade_targets
from conformer_prune.decoding.base import Decoder

log = logging.getLogger(__name__)


def build_decoders(
    cfg: DictConfig,
    tokenizer,
    train_texts: list[str],
    work_dir: Path,
    lm_files: tuple[Path, Path] | None = None,
) -> tuple[dict[str, Decoder], str]:
    """``{"greedy": ..., "default": ...}`` and the default decoder's name.

    When ``cfg.lm`` is set, a word n-gram LM and a lexicon are built from ``train_texts`` into
    ``work_dir`` (``lm.arpa``, ``lexicon.txt``) and handed to the default decoder; ``lm_files``
    (``lm.arpa``, ``lexicon.txt`` a run built before) are used instead when given.
    """
    extra: dict = {}
    if cfg.get("lm") and lm_files is not None:
        extra = {"lm_path": str(lm_files[0]), "lexicon_words": str(lm_files[1])}
        log.info("word LM and lexicon of the run: %s, %s", *lm_files)
    elif cfg.get("lm"):
        from conformer_prune.decoding.lm import train_ngram_lm

        words = sorted({w for text in train_texts for w in text.split()})
        arpa = Path(work_dir) / "lm.arpa"
        train_ngram_lm(train_texts, order=int(cfg.lm.order)).write_arpa(arpa)
        (Path(work_dir) / "lexicon.txt").write_text("\n".join(words) + "\n")
        extra = {"lexicon_words": words, "lm_path": str(arpa)}
        log.info(
            "built a %d-gram word LM over %d words from %d transcripts",
            cfg.lm.order,
            len(words),
            len(train_texts),
        )

    def build(node: DictConfig) -> Decoder:  # a run config of an older version may name a moved decoder
        return instantiate(upgrade_targets(OmegaConf.to_container(node, resolve=True)))

    decoders = {
        "greedy": build(cfg.greedy)(tokenizer=tokenizer),
        "default": build(cfg.default)(tokenizer=tokenizer, **extra),
    }
    return decoders, str(cfg.name)
