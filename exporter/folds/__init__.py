"""Folds: pure functions of pages, the clock passed in.

A listing's pages folded into counts and ages (`work`), and its transitions into
counters and histograms (`flow`). No I/O, no clock of their own; they may import the
wire codec's item type (`api.codec`), `config` and the leaves.
"""
