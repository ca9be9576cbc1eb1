"""Finetuning: the objective, the loop, one run's schema, folders and events, the worker process.

- ``objective``: the paper's loss from prompts sampled on the true objects;
- ``loop``: ``train()``, the optimisation with validation and early stopping;
- ``job``: ``TrainingJob``, the one typed schema of a run (CLI options, worker command, widget);
- ``run``: ``run_job()``, a job from store snapshot to adapter files, reported as ``events``;
- ``runs``: run folders and their ``run.json`` records;
- ``worker``: a run in a child process, its events read without blocking;
- ``holdout``: what validation uses when the store has no validation split;
- ``distributed`` (torchrun) and ``estimate`` (time and memory before a run starts).
"""
