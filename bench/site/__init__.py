"""The published site: asv's dashboard made to work offline, with the sweep report beside it."""
