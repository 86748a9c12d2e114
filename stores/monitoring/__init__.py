"""Read-only statistics of every store, for the collector, `kredete ops` and `kredete capacity`.

One module per store, each a small repository over its adapter: sizes, counts, replication, statement
statistics, cluster health, feed lag. Nothing here reads a row's or a document's contents.
"""
