"""Analyses over the SSA model: CFG order, dominators, loops, types, activity."""
