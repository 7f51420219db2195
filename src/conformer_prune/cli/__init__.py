"""The functions behind ``scripts/*.py``: each script is a three-line ``@hydra.main`` around one of them.

Hydra (and OmegaConf's resolvers and callbacks) live here and in ``conf/``; the library modules of the
package import none of it at module level, and importing them registers nothing.

* :mod:`~conformer_prune.cli.entry`: the error boundary every script runs in;
* :mod:`~conformer_prune.cli.train`, :mod:`~conformer_prune.cli.evaluate`, :mod:`~conformer_prune.cli.export`,
  :mod:`~conformer_prune.cli.report`, :mod:`~conformer_prune.cli.summarize`,
  :mod:`~conformer_prune.cli.transcribe`: what the scripts of the same names run;
* :mod:`~conformer_prune.cli.validate`: the config checks that run before a run directory exists (a Hydra
  callback), with :mod:`~conformer_prune.cli.typecheck`;
* :mod:`~conformer_prune.cli.decoders`: the ``decoding`` config group built into decoders;
* :mod:`~conformer_prune.cli.resolvers`: the ``cp.*`` OmegaConf resolvers of the baseline experiments,
  registered by the entry points that need them (never as an import side effect).
"""
