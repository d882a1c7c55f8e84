"""SLURM support: topology rules, batch-script generation, the scheduler's commands.

The launcher itself lives in ``launchers/slurm.py``; this package holds its parts:

- ``topology``: how a spec spreads over an allocation (pure);
- ``script``: the batch script and the per-node commands (pure);
- ``options``: what ``--vllm-slurm-opt`` asks of the scheduler (pure);
- ``cli``: sbatch, squeue, scontrol and scancel, and parsing their output;
- ``watchdog``: cancels the job if pytest dies without tearing down.
"""
