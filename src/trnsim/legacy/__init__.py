"""The legacy `neuronxcc.nki` API (NKI 0.1), translated onto trnsim's core: index
expressions and masks become core views, return-style calls become core instructions."""
