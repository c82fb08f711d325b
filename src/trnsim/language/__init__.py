"""Language-level helpers below both front ends (trnsim.nki.language and the legacy
trnsim.legacy.language): tile functions built from trnsim.isa instructions, their operand
rules, and tensor creation. See math.py."""
