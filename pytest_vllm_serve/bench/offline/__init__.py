"""bench/offline"""
