"""Metric families and their exposition: what a scrape shows, read from the results.

The formats (`formats`), the rendering and splicing of a scrape (`exposition`), the
families every environment has whatever its endpoints (`scrape`), and the exporter's own
(`own`). It reads what `running` stores; it may import `running` and below.
"""
