"""Reference models trained with backprop (the only place autograd trains)."""
