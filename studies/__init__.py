"""Transfer studies (issue 16): genotypes and baselines trained on the tasks the search never saw, one table.

The study sits above the training tools and talks to them only through their command lines and the JSON
files they write (``metrics.json``, a search's ``genotype.json``). Layers, each a module:

- ``tasks``: the task registry (tool, data location and its check, headline metrics, ImageNet dependency);
- ``rows``: genotypes (registry names, genotype files, search run folders) and baselines;
- ``settings``: presets and ``--set``, in the study's shared terms (channels, cells, input size, ...);
- ``commands`` and ``detection``: one ``command.sh`` per cell in its tool's own syntax (argparse flags,
  torchreid ``KEY VALUE``, a per-cell MMEngine config);
- ``plan``: the checked grid, ``study.json`` and the cell folders;
- ``cells``: one cell's status and run; ``launch``: the local runner, the Slurm submission and the lock;
- ``results`` and ``report``: the long table, the pivot with ranks, the proxy-vs-target plot.
"""
