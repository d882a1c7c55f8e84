"""bench/loadgen"""
