"""`nki.collectives` (in progress)"""
