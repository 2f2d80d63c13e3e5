"""Offline training scripts for crowdwatch's shipped model artefacts (not used at run time)."""
