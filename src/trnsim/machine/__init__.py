"""The simulated NeuronCore: memories, tensor views, the instruction record, runs."""
