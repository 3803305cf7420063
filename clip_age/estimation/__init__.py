"""The model: which CLIP and its weights, where it runs, its input, and the ages it estimates in
batches."""
