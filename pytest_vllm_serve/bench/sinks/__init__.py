"""bench/sinks"""
