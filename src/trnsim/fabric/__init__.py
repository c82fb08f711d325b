"""The fabric between NeuronCores and chips: topologies as data files (topology.py,
topologies/*.json), the algorithms the Neuron runtime runs collectives with
(algorithms.py), and link-level timing with contention (network.py). Pure data and
arithmetic: the multi-rank scheduler (trnsim.timing.ranks) drives it."""
