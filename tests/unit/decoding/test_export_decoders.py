"""An export's decoding options (export.decoding_config) are the decoders a run picks with
decoding=ctc_greedy, ctc_beam or transducer: same class, same settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from conformer_prune.checkpoint import instantiate_node
from conformer_prune.export import decoding_config
from conformer_prune.models.ctc import CTCModel
from conformer_prune.models.transducer import TransducerModel
from tests.helpers import StrideEncoder

CONF = Path(__file__).resolve().parents[3] / "conf" / "decoding"


class Tokenizer:
    def decode(self, ids: list[int]) -> str:
        return " ".join(map(str, ids))


def settings(decoder) -> tuple[type, dict]:
    return type(decoder), {k: v for k, v in vars(decoder).items() if k != "tokenizer"}


def built(node) -> object:
    return instantiate_node(OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node)(
        tokenizer=Tokenizer()
    )


@pytest.mark.parametrize(
    "net, pairs",
    [
        (
            CTCModel(StrideEncoder(), vocab_size=9),
            {"greedy": ("ctc_greedy", "greedy"), "beam": ("ctc_beam", "default")},
        ),
        (
            TransducerModel(StrideEncoder(), vocab_size=9, pred_dim=8, pred_layers=1, joint_dim=8),
            {"greedy": ("transducer", "greedy"), "beam": ("transducer", "default")},
        ),
    ],
    ids=["ctc", "transducer"],
)
def test_export_decoders_equal_the_decoding_options_of_a_run(net, pairs) -> None:
    exported = decoding_config(net)
    assert exported["default"] == "greedy"
    for name, (option, key) in pairs.items():
        run = OmegaConf.load(CONF / f"{option}.yaml")[key]
        assert settings(built(exported[name])) == settings(built(run)), (name, option)
