"""The clinical foundation model: tokenizer, transformer, pretraining, rollouts and embeddings.

Entry points for the CLI and services (each takes a ``progress`` callback):

* :func:`clinfm.model.train.pretrain` and :func:`clinfm.model.checkpoint.load_checkpoint`
* :func:`clinfm.model.generate.forecast`
* :func:`clinfm.model.embed.embed` (a whole dataset: :func:`clinfm.batch.export_embeddings`)
"""
