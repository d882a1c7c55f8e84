"""The serving benchmarks (marker: benchmark): sweeps, the bench.sh types and the offline benchmark."""
