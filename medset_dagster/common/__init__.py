"""Mechanisms every stage shares: hashing, atomic files, retries, drop counts, Markdown tables.

Nothing here knows Dagster or a pipeline stage; each mechanism exists once.
"""
