"""Launchers start servers: locally, in Docker, or on SLURM; ``external`` attaches to one."""
