"""Threads and queues that move frames: source -> stylizer -> sink."""
